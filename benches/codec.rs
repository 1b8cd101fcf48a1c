//! Codec micro-benchmarks: parse an Inform, parse a GetParameterValuesResponse of 1,000
//! parameters, serialize a SetParameterValues. Inputs are written by the CPE simulator, so
//! they look like what devices send.
//!
//! Run with `cargo bench --bench codec`.

#![allow(clippy::unwrap_used)]

use ferroacs_cpe_sim::cpe;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroacs::cwmp::{
    encode_request, parse_incoming, AcsRequest, CwmpNs, GetParameterValues, Header, ParameterValue,
    SetParameterValues,
};

fn inform_xml() -> String {
    let mut dev = cpe::Device::synthetic(cpe::Root::Igd, "BENCH0001", 300);
    dev.state.bootstrapped = true;
    let events = dev.inform_events(&[("2 PERIODIC", "")]);
    dev.inform_envelope(&events, "cpe-1")
}

fn gpv_response_xml(n: usize) -> String {
    let mut dev = cpe::Device::synthetic(cpe::Root::Igd, "BENCH0002", n + 200);
    let names: Vec<String> = dev
        .model
        .iter()
        .filter(|(_, p)| !p.is_object)
        .map(|(k, _)| k.clone())
        .take(n)
        .collect();
    assert_eq!(names.len(), n, "synthetic model too small");
    let req = encode_request(
        CwmpNs::V1_0,
        &Header::with_id("acs-1"),
        &AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: names,
        }),
    );
    let reply = dev.respond_to(&req).unwrap();
    assert!(reply.fault.is_none(), "GetParameterValues faulted");
    reply.xml
}

fn spv(n: usize) -> AcsRequest {
    AcsRequest::SetParameterValues(SetParameterValues {
        parameter_list: (0..n)
            .map(|i| {
                ParameterValue::string(
                    format!("InternetGatewayDevice.LANDevice.1.WLANConfiguration.{i}.SSID"),
                    format!("bench-ssid-{i} <&>"),
                )
            })
            .collect(),
        parameter_key: "bench-key".into(),
    })
}

fn codec(c: &mut Criterion) {
    let inform = inform_xml();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(inform.len() as u64));
    g.bench_function("parse_inform", |b| {
        b.iter(|| parse_incoming(black_box(&inform)).unwrap())
    });
    let gpv = gpv_response_xml(1000);
    g.throughput(Throughput::Bytes(gpv.len() as u64));
    g.bench_function("parse_gpv_response_1000", |b| {
        b.iter(|| parse_incoming(black_box(&gpv)).unwrap())
    });
    for n in [5, 100] {
        let req = spv(n);
        let header = Header::with_id("acs-2");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("serialize_spv_{n}"), |b| {
            b.iter(|| encode_request(CwmpNs::V1_0, &header, black_box(&req)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
