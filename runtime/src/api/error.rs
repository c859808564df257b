//! API errors: JSON `{code, message, field}` with the matching HTTP status.
use super::types::ErrorBody;
use crate::slice::SliceError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).with_field(field)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
    /// The audit log's view of this error.
    pub fn outcome(&self) -> crate::audit::Outcome {
        crate::audit::Outcome::error(self.status.as_u16(), self.code, &self.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<SliceError> for ApiError {
    fn from(e: SliceError) -> ApiError {
        let message = e.to_string();
        if let SliceError::Invalid { field, .. } = &e {
            return ApiError::invalid(field, message);
        }
        let (status, code) = e.status_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, code, message)
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_failed",
            format!("audit log: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// Parse a JSON request body into `T`, naming the offending field on errors. An empty body
/// is `{}` (every request type has defaults for everything but what it validates itself).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))?
    };
    parse_value(value)
}

/// Convert a JSON value into `T`, naming the offending field on errors: the path
/// (`limits.memory_max`, `net.ports[0].host_port`) comes from `serde_path_to_error`.
pub fn parse_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        // The root is "." (a body that is not an object); an unknown member is part of the
        // path already (`limits.memroy_max`).
        let field = (path != ".")
            .then_some(path)
            .or_else(|| unknown_field(&msg));
        let mut err = ApiError::bad_request(format!("request body: {msg}"));
        err.field = field;
        err
    })
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::{CreateRequest, LimitsPatch};

    #[test]
    fn slice_errors_map_to_status_code_and_field() {
        let cases = [
            (SliceError::NotFound("a".into()), 404, "not_found", None),
            (
                SliceError::AlreadyExists("a".into()),
                409,
                "already_exists",
                None,
            ),
            (
                SliceError::Invalid {
                    field: "limits.cpu_max".into(),
                    reason: "too big".into(),
                },
                400,
                "invalid",
                Some("limits.cpu_max"),
            ),
            (
                SliceError::Conflict {
                    name: "a".into(),
                    state: "stopped".into(),
                    reason: "start it".into(),
                },
                409,
                "conflict",
                None,
            ),
            (
                SliceError::Start {
                    name: "a".into(),
                    reason: "boom".into(),
                },
                500,
                "start_failed",
                None,
            ),
        ];
        for (e, status, code, field) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.code, code);
            assert_eq!(a.field.as_deref(), field);
        }
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<CreateRequest>(br#"{"name":"a","bogus":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"));
        let e = parse_body::<CreateRequest>(br#"{"name":"a","limits":{"memory_max":"lots"}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.memory_max"), "{e:?}");
        let e =
            parse_body::<CreateRequest>(br#"{"name":"a","limits":{"memroy_max":1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.memroy_max"), "{e:?}");
        let e = parse_body::<CreateRequest>(br#"{"name":7}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_body::<CreateRequest>(br#"{"name":"a","net":{"ports":[{"host_port":"x"}]}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("net.ports[0].host_port"), "{e:?}");
        let e = parse_body::<CreateRequest>(br#"{"name":"a","net":{"allow":{"sloces":[]}}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("net.allow.sloces"), "{e:?}");
        let e = parse_body::<CreateRequest>(b"{nope").unwrap_err();
        assert_eq!((e.status.as_u16(), e.field), (400, None));
        let p: LimitsPatch = parse_body(b"").unwrap();
        assert_eq!(p, LimitsPatch::default());
    }
}
