//! Test fixtures: one instance of every CWMP message with every optional part
//! filled, using values that satisfy the BBF schemas of every namespace that
//! defines the message (so they double as schema-validation inputs).

use super::fault::{CwmpFault, SpvFault};
use super::types::*;

/// Text with every character that needs escaping.
pub const NASTY: &str = "s3cr&t <x> \"q\" 'a' ]]> tab\tend";

fn op_result(n: u32) -> OpResult {
    OpResult {
        uuid: format!("6ba7b810-9dad-11d1-80b4-00c04fd430c{n}"),
        deployment_unit_ref: format!("Device.SoftwareModules.DeploymentUnit.{n}."),
        version: "1.0.2".into(),
        current_state: "Installed".into(),
        resolved: true,
        execution_unit_ref_list: format!("Device.SoftwareModules.ExecutionUnit.{n}."),
        start_time: "2024-05-01T12:00:00Z".into(),
        complete_time: "2024-05-01T12:00:05Z".into(),
        fault: FaultStruct {
            fault_code: 0,
            fault_string: String::new(),
        },
    }
}

/// Every ACS request.
pub fn acs_requests() -> Vec<AcsRequest> {
    vec![
        AcsRequest::GetRpcMethods,
        AcsRequest::GetParameterNames(GetParameterNames {
            parameter_path: "InternetGatewayDevice.LANDevice.".into(),
            next_level: true,
        }),
        AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: vec![
                "InternetGatewayDevice.DeviceInfo.".into(),
                "InternetGatewayDevice.ManagementServer.URL".into(),
            ],
        }),
        AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: vec![
                ParameterValue::new(
                    "InternetGatewayDevice.ManagementServer.PeriodicInformInterval",
                    "3600",
                    "xsd:unsignedInt",
                ),
                ParameterValue::new(
                    "InternetGatewayDevice.ManagementServer.PeriodicInformEnable",
                    "1",
                    "xsd:boolean",
                ),
                ParameterValue::string(
                    "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword",
                    NASTY,
                ),
            ],
            parameter_key: "prov-8".into(),
        }),
        AcsRequest::GetParameterAttributes(GetParameterAttributes {
            parameter_names: vec!["InternetGatewayDevice.DeviceInfo.SoftwareVersion".into()],
        }),
        AcsRequest::SetParameterAttributes(SetParameterAttributes {
            parameter_list: vec![
                SetParameterAttribute {
                    name: "InternetGatewayDevice.DeviceInfo.SoftwareVersion".into(),
                    notification_change: true,
                    notification: 2,
                    access_list_change: true,
                    access_list: vec!["Subscriber".into()],
                },
                SetParameterAttribute {
                    name: "InternetGatewayDevice.ManagementServer.URL".into(),
                    notification_change: false,
                    notification: 0,
                    access_list_change: true,
                    access_list: vec![],
                },
            ],
        }),
        AcsRequest::AddObject(ObjectRequest {
            object_name: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.".into(),
            parameter_key: "add-1".into(),
        }),
        AcsRequest::DeleteObject(ObjectRequest {
            object_name: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.3.".into(),
            parameter_key: "del-1".into(),
        }),
        AcsRequest::Reboot(Reboot {
            command_key: "rb-42".into(),
        }),
        AcsRequest::FactoryReset,
        AcsRequest::Download(Download {
            command_key: "fw-1.0.3".into(),
            file_type: "1 Firmware Upgrade Image".into(),
            url: "https://files.example.net/fw/image.bin?a=1&b=2".into(),
            username: "fw-user".into(),
            password: NASTY.into(),
            file_size: 16_777_216,
            target_file_name: "image.bin".into(),
            delay_seconds: 5,
            success_url: "https://portal.example.net/ok".into(),
            failure_url: "https://portal.example.net/fail".into(),
        }),
        AcsRequest::Upload(Upload {
            command_key: "up-1".into(),
            file_type: "1 Vendor Configuration File".into(),
            url: "https://files.example.net/upload/".into(),
            username: "up".into(),
            password: "p&w".into(),
            delay_seconds: 0,
        }),
        AcsRequest::ScheduleInform(ScheduleInform {
            delay_seconds: 300,
            command_key: "si-1".into(),
        }),
        AcsRequest::ScheduleDownload(ScheduleDownload {
            command_key: "sd-1".into(),
            file_type: "1 Firmware Upgrade Image".into(),
            url: "https://files.example.net/fw/image2.bin".into(),
            username: "u".into(),
            password: "p".into(),
            file_size: 1024,
            target_file_name: "image2.bin".into(),
            time_window_list: vec![
                TimeWindow {
                    window_start: 0,
                    window_end: 3600,
                    window_mode: "1 At Any Time".into(),
                    user_message: "Updating <now>".into(),
                    max_retries: -1,
                },
                TimeWindow {
                    window_start: 7200,
                    window_end: 10800,
                    window_mode: "3 When Idle".into(),
                    user_message: String::new(),
                    max_retries: 3,
                },
            ],
        }),
        AcsRequest::CancelTransfer(CancelTransfer {
            command_key: "sd-1".into(),
        }),
        AcsRequest::ChangeDuState(ChangeDuState {
            operations: vec![
                DuOperation::Install(InstallOp {
                    url: "https://files.example.net/du/app.ipk".into(),
                    uuid: Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8".into()),
                    username: Some("du".into()),
                    password: Some("du&pw".into()),
                    execution_env_ref: Some("Device.SoftwareModules.ExecEnv.1.".into()),
                }),
                DuOperation::Update(UpdateOp {
                    uuid: Some("6ba7b810-9dad-11d1-80b4-00c04fd430c9".into()),
                    version: Some("2.0".into()),
                    url: Some("https://files.example.net/du/app2.ipk".into()),
                    username: Some("du".into()),
                    password: Some("pw".into()),
                }),
                DuOperation::Uninstall(UninstallOp {
                    uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c7".into(),
                    version: Some("1.0".into()),
                    execution_env_ref: Some("Device.SoftwareModules.ExecEnv.1.".into()),
                }),
            ],
            command_key: Some("du-1".into()),
        }),
        AcsRequest::GetQueuedTransfers,
        AcsRequest::GetAllQueuedTransfers,
    ]
}

/// Every ACS response.
pub fn acs_responses() -> Vec<AcsResponse> {
    vec![
        AcsResponse::Inform { max_envelopes: 1 },
        AcsResponse::TransferComplete,
        AcsResponse::AutonomousTransferComplete,
        AcsResponse::GetRpcMethods {
            method_list: vec![
                "Inform".into(),
                "GetRPCMethods".into(),
                "TransferComplete".into(),
            ],
        },
        AcsResponse::RequestDownload,
        AcsResponse::Kicked {
            next_url: "https://portal.example.net/next?x=1&y=2".into(),
        },
        AcsResponse::DuStateChangeComplete,
        AcsResponse::AutonomousDuStateChangeComplete,
    ]
}

/// Every CPE request.
pub fn cpe_requests() -> Vec<CpeRequest> {
    vec![
        CpeRequest::Inform(Inform {
            device_id: DeviceIdStruct {
                manufacturer: "Example & Co".into(),
                oui: "00D09E".into(),
                product_class: "ATA-2".into(),
                serial_number: "S123456".into(),
            },
            events: vec![
                EventStruct {
                    event_code: "1 BOOT".into(),
                    command_key: String::new(),
                },
                EventStruct {
                    event_code: "M Reboot".into(),
                    command_key: "rb-42".into(),
                },
            ],
            max_envelopes: 1,
            current_time: "2024-05-01T12:00:00Z".into(),
            retry_count: 3,
            parameter_list: vec![
                ParameterValue::string("InternetGatewayDevice.DeviceInfo.SoftwareVersion", "1.2.3"),
                ParameterValue::string(
                    "InternetGatewayDevice.ManagementServer.ConnectionRequestURL",
                    "http://192.0.2.10:7547/k3y9",
                ),
                ParameterValue::new(
                    "InternetGatewayDevice.ManagementServer.PeriodicInformInterval",
                    "600",
                    "xsd:unsignedInt",
                ),
                ParameterValue::string("InternetGatewayDevice.X_Note", NASTY),
            ],
        }),
        CpeRequest::TransferComplete(TransferComplete {
            command_key: "fw-1.0.3".into(),
            fault: FaultStruct {
                fault_code: 9010,
                fault_string: "Download failed: <404>".into(),
            },
            start_time: "2024-05-01T12:00:00Z".into(),
            complete_time: "2024-05-01T12:01:00Z".into(),
        }),
        CpeRequest::AutonomousTransferComplete(AutonomousTransferComplete {
            announce_url: "http://announce.example.net/".into(),
            transfer_url: "http://files.example.net/fw.bin".into(),
            is_download: true,
            file_type: "1 Firmware Upgrade Image".into(),
            file_size: 4096,
            target_file_name: "fw.bin".into(),
            fault: FaultStruct {
                fault_code: 0,
                fault_string: String::new(),
            },
            start_time: "2024-05-01T12:00:00Z".into(),
            complete_time: "2024-05-01T12:01:00Z".into(),
        }),
        CpeRequest::GetRpcMethods,
        CpeRequest::RequestDownload(RequestDownload {
            file_type: "3 Vendor Configuration File".into(),
            file_type_arg: vec![
                ArgStruct {
                    name: "Version".into(),
                    value: "v2".into(),
                },
                ArgStruct {
                    name: "Profile".into(),
                    value: "a&b".into(),
                },
            ],
        }),
        CpeRequest::Kicked(Kicked {
            command: "provision".into(),
            referer: "http://portal.example.net/".into(),
            arg: "x=1".into(),
            next: "http://portal.example.net/done".into(),
        }),
        CpeRequest::DuStateChangeComplete(DuStateChangeComplete {
            results: vec![op_result(1), op_result(2)],
            command_key: Some("du-1".into()),
        }),
        CpeRequest::AutonomousDuStateChangeComplete(AutonomousDuStateChangeComplete {
            results: vec![AutonOpResult {
                result: op_result(3),
                operation_performed: "Install".into(),
            }],
        }),
    ]
}

/// Every CPE response.
pub fn cpe_responses() -> Vec<CpeResponse> {
    vec![
        CpeResponse::GetRpcMethods {
            method_list: vec![
                "GetRPCMethods".into(),
                "GetParameterNames".into(),
                "GetParameterValues".into(),
                "SetParameterValues".into(),
            ],
        },
        CpeResponse::GetParameterNames {
            parameter_list: vec![
                ParameterInfo {
                    name: "InternetGatewayDevice.LANDevice.1.".into(),
                    writable: false,
                },
                ParameterInfo {
                    name: "InternetGatewayDevice.LANDevice.1.X_Name".into(),
                    writable: true,
                },
            ],
        },
        CpeResponse::GetParameterValues {
            parameter_list: vec![
                ParameterValue::string("InternetGatewayDevice.DeviceInfo.SoftwareVersion", "1.2.3"),
                ParameterValue::new(
                    "InternetGatewayDevice.DeviceInfo.UpTime",
                    "86400",
                    "xsd:unsignedInt",
                ),
                ParameterValue::new(
                    "InternetGatewayDevice.Time.CurrentLocalTime",
                    "2024-05-01T12:00:00Z",
                    "xsd:dateTime",
                ),
            ],
        },
        CpeResponse::SetParameterValues { status: 1 },
        CpeResponse::GetParameterAttributes {
            parameter_list: vec![ParameterAttribute {
                name: "InternetGatewayDevice.DeviceInfo.SoftwareVersion".into(),
                notification: 2,
                access_list: vec!["Subscriber".into()],
            }],
        },
        CpeResponse::SetParameterAttributes,
        CpeResponse::AddObject {
            instance_number: 4,
            status: 0,
        },
        CpeResponse::DeleteObject { status: 0 },
        CpeResponse::Reboot,
        CpeResponse::FactoryReset,
        CpeResponse::Download {
            status: 1,
            start_time: UNKNOWN_TIME.into(),
            complete_time: UNKNOWN_TIME.into(),
        },
        CpeResponse::Upload {
            status: 0,
            start_time: "2024-05-01T12:00:00Z".into(),
            complete_time: "2024-05-01T12:00:09Z".into(),
        },
        CpeResponse::ScheduleInform,
        CpeResponse::ScheduleDownload,
        CpeResponse::CancelTransfer,
        CpeResponse::ChangeDuState,
        CpeResponse::GetQueuedTransfers {
            transfer_list: vec![QueuedTransfer {
                command_key: "fw-1.0.3".into(),
                state: 2,
            }],
        },
        CpeResponse::GetAllQueuedTransfers {
            transfer_list: vec![AllQueuedTransfer {
                command_key: "fw-1.0.3".into(),
                state: 1,
                is_download: true,
                file_type: "1 Firmware Upgrade Image".into(),
                file_size: 4096,
                target_file_name: "fw.bin".into(),
            }],
        },
    ]
}

/// An ACS fault.
pub fn acs_fault() -> CwmpFault {
    CwmpFault::method_not_supported()
}

/// A CPE SetParameterValues fault with per-parameter detail.
pub fn cpe_spv_fault() -> CwmpFault {
    CwmpFault {
        code: 9003,
        string: "Invalid arguments".into(),
        set_parameter_values_faults: vec![
            SpvFault {
                parameter_name: "InternetGatewayDevice.ManagementServer.PeriodicInformInterval"
                    .into(),
                code: 9007,
                string: "Invalid parameter value".into(),
            },
            SpvFault {
                parameter_name: "InternetGatewayDevice.DeviceInfo.SerialNumber".into(),
                code: 9008,
                string: "Attempt to set a non-writable parameter".into(),
            },
        ],
    }
}
