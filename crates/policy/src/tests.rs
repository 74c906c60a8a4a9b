use super::*;

const RT_A: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-0123456789";
const RT_B: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/b-0123456789";
const INVOKE: &str = "bedrock-agentcore:InvokeAgentRuntime";

fn policy(v: Value) -> Policy {
    Policy::from_value(&v).expect("test policy parses")
}

fn decide(p: &Policy, action: &str, resource: &str, ctx: &Context) -> Decision {
    p.decide(&Request {
        action,
        resource,
        context: ctx,
    })
}

#[test]
fn allow_needs_a_matching_statement() {
    let p = policy(serde_json::json!({
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": INVOKE, "Resource": RT_A}
    }));
    let ctx = Context::new();
    assert_eq!(decide(&p, INVOKE, RT_A, &ctx), Decision::Allow);
    assert_eq!(decide(&p, INVOKE, RT_B, &ctx), Decision::ImplicitDeny);
    assert_eq!(
        decide(&p, "bedrock-agentcore:DeleteAgentRuntime", RT_A, &ctx),
        Decision::ImplicitDeny
    );
}

#[test]
fn explicit_deny_wins_within_and_across_policies() {
    let allow_all = policy(serde_json::json!({
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    }));
    let deny_b = policy(serde_json::json!({
        "Statement": [
            {"Effect": "Allow", "Action": "bedrock-agentcore:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "bedrock-agentcore:Invoke*", "Resource": RT_B}
        ]
    }));
    let ctx = Context::new();
    assert_eq!(decide(&deny_b, INVOKE, RT_B, &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&deny_b, INVOKE, RT_A, &ctx), Decision::Allow);
    let req = Request {
        action: INVOKE,
        resource: RT_B,
        context: &ctx,
    };
    assert_eq!(
        evaluate([&allow_all, &deny_b], &req),
        Decision::ExplicitDeny
    );
    assert_eq!(evaluate([&allow_all], &req), Decision::Allow);
    assert_eq!(evaluate([], &req), Decision::ImplicitDeny);
}

#[test]
fn wildcards_in_actions_are_case_insensitive_and_in_resources_not() {
    let p = policy(serde_json::json!({
        "Statement": [{"Effect": "Allow", "Action": ["bedrock-agentcore:invoke*"],
                       "Resource": "arn:aws:bedrock-agentcore:*:*:runtime/a-*"}]
    }));
    let ctx = Context::new();
    assert!(decide(&p, INVOKE, RT_A, &ctx).allowed());
    assert!(
        decide(
            &p,
            "BEDROCK-AGENTCORE:INVOKEAGENTRUNTIMEFORUSER",
            RT_A,
            &ctx
        )
        .allowed()
    );
    assert!(!decide(&p, INVOKE, RT_B, &ctx).allowed());
    assert!(!decide(&p, INVOKE, &RT_A.replace("runtime/a-", "runtime/A-"), &ctx).allowed());
    // `?` is exactly one character.
    let q = policy(serde_json::json!({
        "Statement": [{"Effect": "Allow", "Action": "s3:?etObject", "Resource": "arn:aws:s3:::bucket/*"}]
    }));
    assert!(decide(&q, "s3:GetObject", "arn:aws:s3:::bucket/k", &ctx).allowed());
    assert!(!decide(&q, "s3:PutObject", "arn:aws:s3:::bucket/k", &ctx).allowed());
    assert!(!decide(&q, "s3:GetObject", "arn:aws:s3:::other/k", &ctx).allowed());
}

#[test]
fn arn_wildcards_do_not_cross_fields() {
    // A `*` in the region field must not swallow the account and resource fields.
    let p = policy(serde_json::json!({
        "Statement": [{"Effect": "Allow", "Action": "*",
                       "Resource": "arn:aws:bedrock-agentcore:*:999999999999:*"}]
    }));
    let ctx = Context::new();
    assert!(!decide(&p, INVOKE, RT_A, &ctx).allowed());
    assert!(
        decide(
            &p,
            INVOKE,
            &RT_A.replace("123456789012", "999999999999"),
            &ctx
        )
        .allowed()
    );
}

#[test]
fn not_action_and_not_resource() {
    let p = policy(serde_json::json!({
        "Statement": [
            {"Effect": "Allow", "NotAction": "bedrock-agentcore:Delete*", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "NotResource": [RT_A, "arn:aws:s3:::*"]}
        ]
    }));
    let ctx = Context::new();
    assert!(decide(&p, INVOKE, RT_A, &ctx).allowed());
    assert!(decide(&p, "s3:PutObject", "arn:aws:s3:::b/k", &ctx).allowed());
    assert_eq!(
        decide(&p, "bedrock-agentcore:DeleteAgentRuntime", RT_A, &ctx),
        Decision::ImplicitDeny
    );
    // Everything outside NotResource is denied, even an allowed action.
    assert_eq!(decide(&p, INVOKE, RT_B, &ctx), Decision::ExplicitDeny);
}

#[test]
fn conditions() {
    let p = policy(serde_json::json!({
        "Statement": [{
            "Effect": "Allow", "Action": INVOKE, "Resource": "*",
            "Condition": {
                "StringLike": {"bedrock-agentcore:RuntimeUserId": ["alice", "team-*"]},
                "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/ci-*"},
                "StringEqualsIfExists": {"bedrock-agentcore:Qualifier": "DEFAULT"}
            }
        }]
    }));
    let mut ctx = Context::new();
    ctx.set(
        "aws:PrincipalArn",
        "arn:aws:iam::123456789012:role/ci-deploy",
    );
    // Every condition must hold; a missing key fails a positive operator.
    assert!(!decide(&p, INVOKE, RT_A, &ctx).allowed());
    ctx.set("bedrock-agentcore:RuntimeUserId", "team-blue");
    assert!(decide(&p, INVOKE, RT_A, &ctx).allowed());
    // Keys are case-insensitive.
    ctx.set("BEDROCK-AGENTCORE:QUALIFIER", "prod");
    assert!(!decide(&p, INVOKE, RT_A, &ctx).allowed());
    ctx.set("bedrock-agentcore:qualifier", "DEFAULT");
    assert!(decide(&p, INVOKE, RT_A, &ctx).allowed());
    ctx.set("bedrock-agentcore:RuntimeUserId", "bob");
    assert!(!decide(&p, INVOKE, RT_A, &ctx).allowed());
    ctx.set("bedrock-agentcore:RuntimeUserId", "alice");
    ctx.set(
        "aws:PrincipalArn",
        "arn:aws:iam::123456789012:role/prod-deploy",
    );
    assert!(!decide(&p, INVOKE, RT_A, &ctx).allowed());
}

#[test]
fn negated_and_null_conditions() {
    let deny_without_user = policy(serde_json::json!({
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"Null": {"bedrock-agentcore:RuntimeUserId": "true"}}},
            {"Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"StringNotEquals": {"bedrock-agentcore:Qualifier": ["DEFAULT", "prod"]}}}
        ]
    }));
    let mut ctx = Context::new();
    // No user id: the Null deny applies. A missing key makes StringNotEquals hold, too.
    assert_eq!(
        decide(&deny_without_user, INVOKE, RT_A, &ctx),
        Decision::ExplicitDeny
    );
    ctx.set("bedrock-agentcore:RuntimeUserId", "alice");
    ctx.set("bedrock-agentcore:Qualifier", "prod");
    assert!(decide(&deny_without_user, INVOKE, RT_A, &ctx).allowed());
    ctx.set("bedrock-agentcore:Qualifier", "canary");
    assert_eq!(
        decide(&deny_without_user, INVOKE, RT_A, &ctx),
        Decision::ExplicitDeny
    );
    let b = policy(serde_json::json!({
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                       "Condition": {"Bool": {"aws:SecureTransport": false}}}]
    }));
    let mut ctx = Context::new();
    ctx.set("aws:SecureTransport", "false");
    assert!(decide(&b, INVOKE, RT_A, &ctx).allowed());
    ctx.set("aws:SecureTransport", "true");
    assert!(!decide(&b, INVOKE, RT_A, &ctx).allowed());
}

#[test]
fn malformed_and_unsupported_documents_are_refused() {
    let bad = [
        r#"not json"#,
        r#"[]"#,
        r#"{"Version": "2012-10-17"}"#,
        r#"{"Version": "2020-01-01", "Statement": []}"#,
        r#"{"Statement": {"Effect": "Maybe", "Action": "*", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "NotAction": "x", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:StringLike": {"k": "1"}}}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::${aws:username}/*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Extra": 1}}"#,
    ];
    for text in bad {
        assert!(Policy::parse(text).is_err(), "accepted {text}");
    }
    assert!(Policy::parse(r#"{"Version": "2012-10-17", "Statement": []}"#).is_ok());
}

const KEY_B: &str = "arn:aws:iam::123456789012:user/berth-key/BKAKB";

fn with_principal(arn: &str) -> Context {
    let mut c = Context::new();
    c.set("aws:PrincipalArn", arn);
    c
}

#[test]
fn resource_policy_grants_the_named_principal_only() {
    let p = Policy::parse_resource(
        &serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": [KEY_B]},
                           "Action": INVOKE, "Resource": RT_A}]
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        decide(&p, INVOKE, RT_A, &with_principal(KEY_B)),
        Decision::Allow
    );
    let other = "arn:aws:iam::123456789012:user/berth-key/BKAKC";
    assert_eq!(
        decide(&p, INVOKE, RT_A, &with_principal(other)),
        Decision::ImplicitDeny
    );
    // No principal in the context: nothing applies.
    assert_eq!(
        decide(&p, INVOKE, RT_A, &Context::new()),
        Decision::ImplicitDeny
    );
}

#[test]
fn resource_policy_account_principal_denies_but_only_delegates_allows() {
    let allow = Policy::parse_resource(
        r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "123456789012"},
            "Action": "*", "Resource": "*"}}"#,
    )
    .unwrap();
    assert_eq!(
        decide(&allow, INVOKE, RT_A, &with_principal(KEY_B)),
        Decision::ImplicitDeny
    );
    let deny = Policy::parse_resource(
        r#"{"Statement": {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "*", "Resource": "*"}}"#,
    )
    .unwrap();
    assert_eq!(
        decide(&deny, INVOKE, RT_A, &with_principal(KEY_B)),
        Decision::ExplicitDeny
    );
    let star = Policy::parse_resource(
        r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}"#,
    )
    .unwrap();
    assert_eq!(
        decide(&star, INVOKE, RT_A, &with_principal(KEY_B)),
        Decision::Allow
    );
}

#[test]
fn resource_policy_shape_is_checked() {
    // A statement without a Principal, a NotPrincipal, a service principal: refused.
    for text in [
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "*"}, "Action": "*", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Principal": {"Service": "x.amazonaws.com"}, "Action": "*", "Resource": "*"}}"#,
        r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "*", "Resource": "*"}}"#,
        "not json",
    ] {
        assert!(Policy::parse_resource(text).is_err(), "{text}");
    }
    // Identity policies still refuse a Principal.
    assert!(
        Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}"#
        )
        .is_err()
    );
}
