//! The error model AgentCore puts on the wire: an HTTP status, `x-amzn-ErrorType: <ShapeName>`
//! and a JSON body with `message` (plus `reason` and `fieldList` for validation errors).

use serde::Serialize;

/// Every exception Berth can send, named as in the service models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: input failed the model's constraints or could not be parsed.
    Validation,
    /// 401: a JWT authorizer refused the bearer token.
    Unauthorized,
    /// 402: a quota was exceeded (status as modelled).
    ServiceQuotaExceeded,
    /// 403: the principal may not call this operation.
    AccessDenied,
    /// 404: the resource does not exist.
    ResourceNotFound,
    /// 404: no operation matches the method and path.
    UnknownOperation,
    /// 409: the resource is in a state that forbids the call.
    Conflict,
    /// 409: a transient conflict; the same call may succeed later.
    RetryableConflict,
    /// 424: the agent failed (would not start, crashed, answered garbage).
    RuntimeClient,
    /// 429: too many requests.
    Throttling,
    /// 500: a bug or an infrastructure failure; details are logged, not sent.
    Internal,
    /// 503: temporarily unable to serve.
    ServiceUnavailable,
}

impl ErrorKind {
    /// The shape name clients turn into `client.exceptions.<Name>`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::Unauthorized => "UnauthorizedException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::RetryableConflict => "RetryableConflictException",
            ErrorKind::RuntimeClient => "RuntimeClientError",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::Internal => "InternalServerException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
        }
    }

    /// The HTTP status the model gives the shape.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Validation => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::ServiceQuotaExceeded => 402,
            ErrorKind::AccessDenied => 403,
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => 404,
            ErrorKind::Conflict | ErrorKind::RetryableConflict => 409,
            ErrorKind::RuntimeClient => 424,
            ErrorKind::Throttling => 429,
            ErrorKind::Internal => 500,
            ErrorKind::ServiceUnavailable => 503,
        }
    }
}

/// `ValidationExceptionField`: which member failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of the member, e.g. `agentRuntimeArtifact.codeConfiguration.runtime`.
    pub name: String,
    /// What constraint it broke.
    pub message: String,
}

/// One error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}{}", kind.code(), .cause.as_deref().map(|c| format!(" (cause: {c})")).unwrap_or_default())]
pub struct ApiError {
    /// Which exception.
    pub kind: ErrorKind,
    /// Human-readable message, safe to show to the caller.
    pub message: String,
    /// `ValidationExceptionReason` for validation errors.
    pub reason: Option<&'static str>,
    /// Offending members for validation errors.
    pub field_list: Vec<FieldError>,
    /// Overrides `kind.code()` for errors whose code is not one of the modelled shapes
    /// (authentication failures such as `InvalidSignatureException`).
    pub code_override: Option<&'static str>,
    /// Overrides `kind.status()` together with `code_override`.
    pub status_override: Option<u16>,
    /// What went wrong inside, for the server's log only: never serialised, never sent. Set on
    /// internal errors so the one log line of a 500 (written where the error becomes a response,
    /// with the request id) says why.
    pub cause: Option<String>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            reason: None,
            field_list: Vec::new(),
            code_override: None,
            status_override: None,
            cause: None,
        }
    }

    /// A ValidationException with reason `FieldValidationFailed` listing `fields`.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        let n = fields.len();
        let detail: Vec<String> = fields.iter().map(|f| f.message.clone()).collect();
        let message = format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            detail.join("; ")
        );
        Self {
            reason: Some("FieldValidationFailed"),
            field_list: fields,
            ..Self::new(ErrorKind::Validation, message)
        }
    }

    /// A ValidationException about one member.
    pub fn field(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::fields(vec![FieldError {
            name: name.into(),
            message: message.into(),
        }])
    }

    /// A ValidationException with reason `CannotParse`.
    pub fn cannot_parse(message: impl Into<String>) -> Self {
        Self {
            reason: Some("CannotParse"),
            ..Self::new(ErrorKind::Validation, message)
        }
    }

    /// A repeated idempotency token carrying different parameters.
    pub fn idempotent_mismatch() -> Self {
        Self {
            reason: Some("IdempotentParameterMismatchException"),
            ..Self::new(
                ErrorKind::Validation,
                "the client token was already used with different request parameters",
            )
        }
    }

    /// ResourceNotFoundException.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }

    /// ConflictException.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// InternalServerException with a generic message: the cause is logged, never sent.
    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "an internal error occurred; retry the request",
        )
    }

    /// InternalServerException whose `cause` (logged with the request id, never sent) is `cause`.
    pub fn internal_because(cause: impl std::fmt::Display) -> Self {
        Self::internal().with_cause(cause)
    }

    /// The same error, with `cause` recorded for the log.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// What to log about this error: its cause when it has one, else its message.
    pub fn detail(&self) -> &str {
        self.cause.as_deref().unwrap_or(&self.message)
    }

    /// An error with a code that is not a modelled shape (authentication failures).
    pub fn custom(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code_override: Some(code),
            status_override: Some(status),
            ..Self::new(ErrorKind::AccessDenied, message)
        }
    }

    /// Value of `x-amzn-ErrorType`.
    pub fn code(&self) -> &'static str {
        self.code_override.unwrap_or(self.kind.code())
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or(self.kind.status())
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "message": self.message });
        if let Some(r) = self.reason {
            v["reason"] = r.into();
        }
        if !self.field_list.is_empty() {
            v["fieldList"] = serde_json::to_value(&self.field_list).unwrap_or_default();
        }
        v
    }
}
