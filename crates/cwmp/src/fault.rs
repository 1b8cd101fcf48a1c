//! CWMP faults: the `cwmp:Fault` detail of a SOAP fault, the fault-code table
//! of TR-069 (ACS codes 8000-8899, CPE codes 9000-9899) and the SOAP
//! `faultcode` (`Client` / `Server`) that goes with each code.

use serde::{Deserialize, Serialize};

/// The SOAP 1.1 `faultcode` of a CWMP fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SoapFaultCode {
    /// The request was at fault (bad arguments, bad names...).
    Client,
    /// The receiver failed to process a valid request.
    Server,
}

impl SoapFaultCode {
    /// `"Client"` or `"Server"`, as written in `<faultcode>`.
    pub fn as_str(self) -> &'static str {
        match self {
            SoapFaultCode::Client => "Client",
            SoapFaultCode::Server => "Server",
        }
    }
}

/// One `SetParameterValuesFault` entry of a SetParameterValues fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpvFault {
    /// The parameter that could not be set.
    pub parameter_name: String,
    /// Usually 9005, 9006, 9007 or 9008.
    pub code: u32,
    /// Description (may be empty).
    pub string: String,
}

/// A CWMP fault (`cwmp:Fault` inside a SOAP `Fault`), sent by either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CwmpFault {
    /// `FaultCode`. 0 only when a CPE sent a bare SOAP fault without a
    /// `cwmp:Fault` detail.
    pub code: u32,
    /// `FaultString` (may be empty).
    pub string: String,
    /// Per-parameter faults (SetParameterValues only).
    pub set_parameter_values_faults: Vec<SpvFault>,
}

impl std::fmt::Display for CwmpFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CWMP fault {}", self.code)?;
        let text = if self.string.is_empty() {
            CwmpFault::describe(self.code)
        } else {
            &self.string
        };
        if !text.is_empty() {
            write!(f, " ({text})")?;
        }
        for spv in &self.set_parameter_values_faults {
            write!(f, "; {}: {}", spv.parameter_name, spv.code)?;
            if !spv.string.is_empty() {
                write!(f, " ({})", spv.string)?;
            }
        }
        Ok(())
    }
}

impl CwmpFault {
    /// ACS fault: method not supported.
    pub const METHOD_NOT_SUPPORTED: u32 = 8000;
    /// ACS fault: request denied (no reason specified).
    pub const REQUEST_DENIED: u32 = 8001;
    /// ACS fault: internal error.
    pub const INTERNAL_ERROR: u32 = 8002;
    /// ACS fault: invalid arguments.
    pub const INVALID_ARGUMENTS: u32 = 8003;
    /// ACS fault: resources exceeded.
    pub const RESOURCES_EXCEEDED: u32 = 8004;
    /// ACS fault: retry request.
    pub const RETRY_REQUEST: u32 = 8005;
    /// ACS fault: ACS version incompatible with CPE (CWMP 1.4).
    pub const VERSION_INCOMPATIBLE: u32 = 8006;
    /// ACS vendor code used locally (never sent) when a CPE answered the
    /// outstanding request with the response of another method.
    pub const UNEXPECTED_RESPONSE: u32 = 8800;
    /// ACS vendor code used locally (never sent) when a CPE sent an empty POST
    /// instead of answering the outstanding request.
    pub const NO_RESPONSE: u32 = 8801;

    /// A fault with the given code and string and no per-parameter detail.
    pub fn new(code: u32, string: impl Into<String>) -> CwmpFault {
        CwmpFault {
            code,
            string: string.into(),
            set_parameter_values_faults: Vec::new(),
        }
    }

    /// A fault whose string is the standard description of `code`.
    pub fn from_code(code: u32) -> CwmpFault {
        CwmpFault::new(code, CwmpFault::describe(code))
    }

    /// 8000 Method not supported.
    pub fn method_not_supported() -> CwmpFault {
        CwmpFault::from_code(Self::METHOD_NOT_SUPPORTED)
    }

    /// 8001 Request denied.
    pub fn request_denied() -> CwmpFault {
        CwmpFault::from_code(Self::REQUEST_DENIED)
    }

    /// 8002 Internal error.
    pub fn internal_error() -> CwmpFault {
        CwmpFault::from_code(Self::INTERNAL_ERROR)
    }

    /// 8003 Invalid arguments.
    pub fn invalid_arguments() -> CwmpFault {
        CwmpFault::from_code(Self::INVALID_ARGUMENTS)
    }

    /// 8004 Resources exceeded.
    pub fn resources_exceeded() -> CwmpFault {
        CwmpFault::from_code(Self::RESOURCES_EXCEEDED)
    }

    /// 8005 Retry request.
    pub fn retry_request() -> CwmpFault {
        CwmpFault::from_code(Self::RETRY_REQUEST)
    }

    /// 8006 ACS version incompatible with CPE.
    pub fn version_incompatible() -> CwmpFault {
        CwmpFault::from_code(Self::VERSION_INCOMPATIBLE)
    }

    /// The SOAP `faultcode` for this fault's code.
    ///
    /// `Client` for 8003, 9003, 9005-9008 (TR-069 fault table) and for
    /// 9021-9025 (cancellation refused, invalid UUID, unknown/disabled
    /// execution environment, DU/EE mismatch: all caused by the request's
    /// arguments; the brief leaves these open, this is a deliberate choice).
    /// `Server` for everything else.
    pub fn faultcode(&self) -> SoapFaultCode {
        match self.code {
            8003 | 9003 | 9005..=9008 | 9021..=9025 => SoapFaultCode::Client,
            _ => SoapFaultCode::Server,
        }
    }

    /// Whether retrying the same request unchanged cannot succeed, so a task
    /// that got this fault should fail instead of being retried.
    ///
    /// Permanent: 9005-9008 (bad parameter name/type/value, not writable),
    /// 9000 (method not supported), 9003 (invalid arguments, the wrapper of
    /// SetParameterValues faults), 9013 (unsupported transfer protocol), 9022
    /// (invalid UUID format), 9026 (duplicate deployment unit) and 9030-9032
    /// (invalid deployment-unit version). Everything else, including vendor
    /// codes and transfer failures, may succeed on a later attempt.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code,
            9000 | 9003 | 9005..=9008 | 9013 | 9022 | 9026 | 9030..=9032
        )
    }

    /// Whether the code is in the ACS range (8000-8899).
    pub fn is_acs_fault(&self) -> bool {
        (8000..=8899).contains(&self.code)
    }

    /// The standard description of a fault code (empty for unknown codes).
    pub fn describe(code: u32) -> &'static str {
        match code {
            8000 | 9000 => "Method not supported",
            8001 | 9001 => "Request denied",
            8002 | 9002 => "Internal error",
            8003 | 9003 => "Invalid arguments",
            8004 | 9004 => "Resources exceeded",
            8005 => "Retry request",
            8006 => "ACS version incompatible with CPE",
            8800 => "Unexpected response",
            8801 => "No response",
            9005 => "Invalid parameter name",
            9006 => "Invalid parameter type",
            9007 => "Invalid parameter value",
            9008 => "Attempt to set a non-writable parameter",
            9009 => "Notification request rejected",
            9010 => "File transfer failure",
            9011 => "Upload failure",
            9012 => "File transfer server authentication failure",
            9013 => "Unsupported protocol for file transfer",
            9014 => "File transfer failure: unable to join multicast group",
            9015 => "File transfer failure: unable to contact file server",
            9016 => "File transfer failure: unable to access file",
            9017 => "File transfer failure: unable to complete download",
            9018 => "File transfer failure: file corrupted",
            9019 => "File transfer failure: file authentication failure",
            9020 => {
                "File transfer failure: unable to complete download within specified time windows"
            }
            9021 => "Cancelation of file transfer not permitted in current transfer state",
            9022 => "Invalid UUID format",
            9023 => "Unknown execution environment",
            9024 => "Disabled execution environment",
            9025 => "Deployment unit to execution environment mismatch",
            9026 => "Duplicate deployment unit",
            9027 => "System resources exceeded",
            9028 => "Unknown deployment unit",
            9029 => "Invalid deployment unit state",
            9030 => "Invalid deployment unit update: downgrade not permitted",
            9031 => "Invalid deployment unit update: version not specified",
            9032 => "Invalid deployment unit update: version already exists",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faultcode_follows_the_table() {
        assert_eq!(
            CwmpFault::invalid_arguments().faultcode(),
            SoapFaultCode::Client
        );
        assert_eq!(
            CwmpFault::method_not_supported().faultcode(),
            SoapFaultCode::Server
        );
        assert_eq!(
            CwmpFault::from_code(9007).faultcode(),
            SoapFaultCode::Client
        );
        assert_eq!(
            CwmpFault::from_code(9009).faultcode(),
            SoapFaultCode::Server
        );
        assert_eq!(
            CwmpFault::from_code(9027).faultcode(),
            SoapFaultCode::Server
        );
        assert_eq!(
            CwmpFault::from_code(9850).faultcode(),
            SoapFaultCode::Server
        );
    }

    #[test]
    fn permanence() {
        for code in 9005..=9008 {
            assert!(CwmpFault::from_code(code).is_permanent(), "{code}");
        }
        assert!(CwmpFault::from_code(9000).is_permanent());
        assert!(!CwmpFault::from_code(9002).is_permanent());
        assert!(!CwmpFault::from_code(9010).is_permanent());
        assert!(!CwmpFault::retry_request().is_permanent());
        assert!(!CwmpFault::new(9850, "vendor").is_permanent());
    }

    #[test]
    fn helpers_use_standard_codes_and_strings() {
        let f = CwmpFault::version_incompatible();
        assert_eq!(f.code, 8006);
        assert_eq!(f.string, "ACS version incompatible with CPE");
        assert!(f.is_acs_fault());
        assert!(!CwmpFault::from_code(9001).is_acs_fault());
        assert_eq!(CwmpFault::retry_request().code, 8005);
        assert_eq!(CwmpFault::resources_exceeded().code, 8004);
        assert_eq!(CwmpFault::internal_error().code, 8002);
        assert_eq!(CwmpFault::request_denied().code, 8001);
    }

    #[test]
    fn display_is_operator_readable() {
        let mut f = CwmpFault::new(9003, "");
        f.set_parameter_values_faults.push(SpvFault {
            parameter_name: "Device.X".into(),
            code: 9007,
            string: "Invalid parameter value".into(),
        });
        assert_eq!(
            f.to_string(),
            "CWMP fault 9003 (Invalid arguments); Device.X: 9007 (Invalid parameter value)"
        );
    }
}
