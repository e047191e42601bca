//! Refusals in the spec's two error shapes, with the status the SDKs expect.

use airlock_common::dbus::AirlockError;
use std::sync::OnceLock;

use airlock_common::integrations::{ApiCode, ConsentRefusal, Shape};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refusal on its way to the client.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The wire code (`error`, or `body.code`).
    pub code: &'static str,
    pub shape: Shape,
    pub message: String,
    /// The exchange it is about, for the envelope's `requestId`.
    pub request_id: String,
    /// For consent refusals: the app the user must consent to.
    /// (Boxed: it is rare, and keeps every `Result<_, ApiError>` small.)
    pub consent: Option<Box<ConsentRefusal>>,
}

/// Where this daemon is reached (`integrations.public_url`), set once at
/// start: consent refusals point the user at `BASE/consent/APP_ID`.
pub static PUBLIC_URL: OnceLock<String> = OnceLock::new();

/// The page telling the user how to consent to `app_id`.
pub fn consent_url(app_id: &str) -> String {
    let base = PUBLIC_URL.get().map_or("", String::as_str);
    format!("{}/consent/{app_id}", base.trim_end_matches('/'))
}

impl ApiError {
    pub fn new(code: ApiCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code: code.as_str(),
            shape: code.shape(),
            message: message.into(),
            request_id: String::new(),
            consent: None,
        }
    }

    /// A refusal the daemon makes itself, before the gateway is asked.
    pub fn local(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            shape: Shape::Flat,
            message: message.into(),
            request_id: String::new(),
            consent: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ApiCode::InvalidRequest, message)
    }

    pub fn about(mut self, request_id: &str) -> ApiError {
        self.request_id = request_id.to_owned();
        self
    }

    /// What a gateway error means to the enforcer.
    pub fn from_gateway(error: zbus::Error) -> ApiError {
        match AirlockError::from_remote(error) {
            AirlockError::Api(message) => match ApiCode::split(&message) {
                Some((code, text)) => match ConsentRefusal::parse(text) {
                    Some(refusal) => ApiError {
                        consent: Some(Box::new(refusal.clone())),
                        ..ApiError::new(code, refusal.message)
                    },
                    None => ApiError::new(code, text),
                },
                None => internal(&message),
            },
            AirlockError::InvalidArgument(m) => ApiError::bad_request(m),
            AirlockError::NotFound(m) => ApiError::new(ApiCode::NotFound, m),
            AirlockError::Conflict(m) => ApiError::local(StatusCode::CONFLICT, "conflict", m),
            AirlockError::LimitExceeded(m) => ApiError::new(ApiCode::QuotaExceeded, m),
            AirlockError::ZBus(e) => {
                tracing::warn!("the gateway did not answer: {e}");
                unavailable()
            }
            AirlockError::Unavailable(m) => {
                tracing::warn!("{m}");
                unavailable()
            }
            other => internal(&other.message()),
        }
    }
}

fn unavailable() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        shape: Shape::Envelope,
        message: "the approval gateway is not available; try again".into(),
        request_id: String::new(),
        consent: None,
    }
}

fn internal(message: &str) -> ApiError {
    tracing::error!("the gateway refused unexpectedly: {message}");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        shape: Shape::Envelope,
        message: "internal error".into(),
        request_id: String::new(),
        consent: None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.shape {
            Shape::Flat => {
                let mut body = json!({"error": self.code, "message": self.message});
                if let Some(refusal) = &self.consent {
                    body["consentUrl"] = consent_url(&refusal.app_id).into();
                    body["appName"] = refusal.app_name.clone().into();
                    body["appId"] = refusal.app_id.clone().into();
                }
                body
            }
            Shape::Envelope => json!({
                "msgType": "error",
                "body": {"code": self.code, "message": self.message, "requestId": self.request_id},
            }),
        };
        (self.status, Json(body)).into_response()
    }
}
