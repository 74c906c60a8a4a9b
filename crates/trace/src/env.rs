//! What an agent is told about exporting telemetry: the environment runtime-hosted AgentCore
//! agents get (see the reference's section 3.1) and the `baggage` each request carries.

/// What [`agent_env`] needs to know about the sandbox it is for.
#[derive(Debug, Clone, Copy)]
pub struct AgentEnv<'a> {
    /// The runtime's name (`agentRuntimeName`).
    pub runtime_name: &'a str,
    pub runtime_id: &'a str,
    /// The endpoint the sandbox serves; empty for a warm spare, which is started before any
    /// session (of any endpoint of its version) adopts it and is described as `DEFAULT`'s.
    pub endpoint: &'a str,
    /// `cloud.resource_id`: the runtime's ARN, or its endpoint's.
    pub resource_arn: &'a str,
    /// Berth's API as the agent reaches it (`http://127.0.0.1:8750` inside a namespace sandbox).
    pub otlp_endpoint: &'a str,
}

/// The OTel and ADOT variables of the env contract. The caller puts them before the runtime's
/// own `environmentVariables`, which therefore win.
pub fn agent_env(e: &AgentEnv<'_>) -> Vec<(String, String)> {
    let endpoint = if e.endpoint.is_empty() {
        "DEFAULT"
    } else {
        e.endpoint
    };
    let e = AgentEnv { endpoint, ..*e };
    let group = format!(
        "/aws/bedrock-agentcore/runtimes/{}-{}",
        e.runtime_id, e.endpoint
    );
    let vars = [
        ("AGENT_OBSERVABILITY_ENABLED", "true".to_owned()),
        ("OTEL_PYTHON_DISTRO", "aws_distro".to_owned()),
        ("OTEL_PYTHON_CONFIGURATOR", "aws_configurator".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", e.otlp_endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_TRACES_EXPORTER", "otlp".to_owned()),
        // Berth's health probes are not the agent's work: no spans for them (the OTel Python
        // HTTP-server instrumentations honour it), so a session's traces are its invocations and
        // a session is quiet when its calls are.
        ("OTEL_PYTHON_EXCLUDED_URLS", "/ping$".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            format!(
                "service.name={}.{},aws.log.group.names={group},cloud.resource_id={}",
                e.runtime_name, e.endpoint, e.resource_arn
            ),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            format!(
                "x-aws-log-group={group},x-aws-log-stream=runtime-logs,\
                 x-aws-metric-namespace=bedrock-agentcore"
            ),
        ),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The `baggage` header for a request to `session_id`'s agent: `session.id` first, then the
/// caller's members except any `session.id` of its own (the session is the server's to say).
pub fn session_baggage(caller: Option<&str>, session_id: &str) -> String {
    let mut out = format!("session.id={}", encode(session_id));
    for member in caller.unwrap_or("").split(',') {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let key = member.split(['=', ';']).next().unwrap_or("").trim();
        if key == "session.id" {
            continue;
        }
        out.push(',');
        out.push_str(member);
    }
    out
}

/// W3C baggage values are percent-encoded outside a small safe set.
fn encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/!#$&'()*+-?@[]^`{|}".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn env_names_the_runtime_endpoint_and_log_group() {
        let env = agent_env(&AgentEnv {
            runtime_name: "shop",
            runtime_id: "shop-abc1234567",
            endpoint: "DEFAULT",
            resource_arn: "arn:aws:bedrock-agentcore:us-east-1:1:runtime/shop-abc1234567/runtime-endpoint/DEFAULT",
            otlp_endpoint: "http://127.0.0.1:8750",
        });
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("OTEL_EXPORTER_OTLP_ENDPOINT"), "http://127.0.0.1:8750");
        assert_eq!(get("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf");
        assert_eq!(
            get("OTEL_RESOURCE_ATTRIBUTES"),
            "service.name=shop.DEFAULT,aws.log.group.names=/aws/bedrock-agentcore/runtimes/\
             shop-abc1234567-DEFAULT,cloud.resource_id=arn:aws:bedrock-agentcore:us-east-1:1:\
             runtime/shop-abc1234567/runtime-endpoint/DEFAULT"
        );
        assert_eq!(get("AGENT_OBSERVABILITY_ENABLED"), "true");
    }

    #[test]
    fn a_warm_spare_is_described_as_the_default_endpoints() {
        let env = agent_env(&AgentEnv {
            runtime_name: "shop",
            runtime_id: "shop-abc1234567",
            endpoint: "",
            resource_arn: "arn",
            otlp_endpoint: "http://127.0.0.1:8750",
        });
        let attrs = &env
            .iter()
            .find(|(n, _)| n == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap()
            .1;
        assert!(attrs.starts_with("service.name=shop.DEFAULT,"), "{attrs}");
    }

    #[test]
    fn baggage_puts_the_real_session_first_and_drops_a_claimed_one() {
        assert_eq!(session_baggage(None, "s-1"), "session.id=s-1");
        assert_eq!(
            session_baggage(Some("user=7, session.id=forged;p=1,x=y"), "s 1"),
            "session.id=s%201,user=7,x=y"
        );
    }
}
