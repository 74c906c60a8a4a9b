//! The control plane of memory: CreateMemory, GetMemory, ListMemories, UpdateMemory,
//! DeleteMemory, and the strategies with their namespace templates.
//!
//! ```text
//! memory:   CREATING --activation--> ACTIVE --DeleteMemory--> DELETING --purge--> gone
//! strategy: CREATING --activation--> ACTIVE ; deleted strategies disappear at once
//! ```

use crate::Memory;
use crate::wire::{internal, invalid, max_results, req_str, str_of, token, untoken_pair};
use berth_api::{ApiError, ErrorKind};
use berth_store::memory::{MemoryRow, TokenRow};
use berth_types::{epoch_seconds, now_millis, random_alnum};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, info};

/// The input union members of a strategy, with the type each becomes.
const STRATEGY_KINDS: [(&str, &str); 5] = [
    ("semanticMemoryStrategy", "SEMANTIC"),
    ("summaryMemoryStrategy", "SUMMARIZATION"),
    ("userPreferenceMemoryStrategy", "USER_PREFERENCE"),
    ("episodicMemoryStrategy", "EPISODIC"),
    ("customMemoryStrategy", "CUSTOM"),
];

/// Namespace variables every strategy may use.
const BUILTIN_VARS: [&str; 3] = ["actorId", "sessionId", "memoryStrategyId"];

/// Most strategies a memory may have (AgentCore's quota).
const MAX_STRATEGIES: usize = 6;

/// The SDK's default namespace template for a strategy type.
fn default_namespace(kind: &str) -> &'static str {
    match kind {
        "SUMMARIZATION" | "EPISODIC" | "CUSTOM" => {
            "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}/"
        }
        _ => "/strategies/{memoryStrategyId}/actors/{actorId}/",
    }
}

fn request_hash(input: &Value) -> String {
    let mut v = input.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("clientToken");
    }
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Variables (`{name}`) a namespace template uses.
pub(crate) fn template_vars(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// Fills a namespace template; `None` when a variable has no value.
pub(crate) fn fill_template(t: &str, vars: &[(&str, &str)]) -> Option<String> {
    let mut s = t.to_owned();
    for v in template_vars(t) {
        let value = vars.iter().find(|(k, _)| *k == v)?.1;
        s = s.replace(&format!("{{{v}}}"), value);
    }
    Some(s)
}

/// The `NamespaceVariableKey` rule the regex engine cannot express (it uses look-ahead).
pub(crate) fn check_variable_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !BUILTIN_VARS.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            format!(
                "Value '{name}' at '{field}' failed to satisfy constraint: a namespace key is \
                 lowercase letters and digits, starts with a letter, and is not memoryStrategyId, \
                 actorId or sessionId"
            ),
        ))
    }
}

fn check_templates(templates: &[String], custom_keys: &[String]) -> Result<(), ApiError> {
    for t in templates {
        for v in template_vars(t) {
            if !BUILTIN_VARS.contains(&v) && !custom_keys.iter().any(|k| k == v) {
                return Err(invalid(format!(
                    "namespace template {t:?} uses {{{v}}}, which is neither actorId, sessionId, \
                     memoryStrategyId nor a declared namespace key"
                )));
            }
        }
    }
    Ok(())
}

fn namespace_keys(spec: &Value) -> Vec<String> {
    spec.get("namespaceKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| str_of(k, "key").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The override type and configuration of a custom strategy, in output shape.
fn custom_configuration(cfg: &Value) -> Value {
    let Some((key, body)) = cfg.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    let (ty, prefix) = match key.as_str() {
        "semanticOverride" => ("SEMANTIC_OVERRIDE", "semantic"),
        "summaryOverride" => ("SUMMARY_OVERRIDE", "summary"),
        "userPreferenceOverride" => ("USER_PREFERENCE_OVERRIDE", "userPreference"),
        "episodicOverride" => ("EPISODIC_OVERRIDE", "episodic"),
        "selfManagedConfiguration" => {
            return json!({"type": "SELF_MANAGED", "selfManagedConfiguration": body});
        }
        _ => return Value::Null,
    };
    let mut out = json!({"type": ty});
    if let Some(x) = body.get("extraction") {
        out["extraction"] = json!({"customExtractionConfiguration": {
            format!("{prefix}ExtractionOverride"): x}});
    }
    if let Some(x) = body.get("consolidation") {
        out["consolidation"] = json!({"customConsolidationConfiguration": {
            format!("{prefix}ConsolidationOverride"): x}});
    }
    if let Some(x) = body.get("reflection") {
        out["reflection"] = json!({"customReflectionConfiguration": {
            format!("{prefix}ReflectionOverride"): x}});
    }
    out
}

/// Builds a stored strategy from one `MemoryStrategyInput` union.
fn new_strategy(input: &Value, custom_keys: &[String], now: i64) -> Result<Value, ApiError> {
    let Some((key, body)) = input.as_object().and_then(|o| o.iter().next()) else {
        return Err(invalid(
            "a memory strategy must set exactly one strategy type",
        ));
    };
    let kind = STRATEGY_KINDS
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, t)| *t)
        .ok_or_else(|| invalid(format!("unknown memory strategy type {key}")))?;
    let name = req_str(body, "name")?;
    let templates: Vec<String> = body
        .get("namespaceTemplates")
        .or_else(|| body.get("namespaces"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| vec![default_namespace(kind).to_owned()]);
    check_templates(&templates, custom_keys)?;
    let id = format!("{name}-{}", random_alnum(10));
    let mut s = json!({
        "strategyId": id,
        "name": name,
        "type": kind,
        "namespaces": templates,
        "namespaceTemplates": templates,
        "status": "CREATING",
        "createdAt": epoch_seconds(now),
        "updatedAt": epoch_seconds(now),
    });
    if let Some(d) = str_of(body, "description") {
        s["description"] = d.into();
    }
    if let Some(schema) = body.get("memoryRecordSchema") {
        s["memoryRecordSchema"] = schema.clone();
    }
    if let Some(days) = body
        .get("recordExpirySpecification")
        .and_then(|r| r.get("recordExpiryDurationDays"))
    {
        s["recordExpiryDurationDays"] = days.clone();
    }
    if kind == "CUSTOM" {
        let cfg = body
            .get("configuration")
            .map(custom_configuration)
            .unwrap_or(Value::Null);
        if !cfg.is_null() {
            s["configuration"] = cfg;
        }
    }
    if kind == "EPISODIC"
        && let Some(r) = body.get("reflectionConfiguration")
    {
        s["configuration"] = json!({"reflection": {"episodicReflectionConfiguration": r}});
    }
    Ok(s)
}

fn strategies(spec: &Value) -> Vec<Value> {
    spec.get("strategies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn check_unique_names(list: &[Value]) -> Result<(), ApiError> {
    let mut names: Vec<&str> = list.iter().filter_map(|s| str_of(s, "name")).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!(
            "memory strategy names must be unique within a memory; {} is used twice",
            w[0]
        )));
    }
    if list.len() > MAX_STRATEGIES {
        return Err(ApiError::new(
            ErrorKind::ServiceQuotaExceeded,
            format!("a memory may have at most {MAX_STRATEGIES} strategies"),
        ));
    }
    Ok(())
}

impl Memory {
    /// The full `Memory` output shape.
    pub(crate) fn memory_body(&self, m: &MemoryRow) -> Value {
        let mut v = json!({
            "arn": self.arn(&m.id),
            "id": m.id,
            "name": m.name,
            "eventExpiryDuration": m.event_expiry_days,
            "status": m.status,
            "createdAt": epoch_seconds(m.created_at),
            "updatedAt": epoch_seconds(m.updated_at),
            "strategies": strategies(&m.spec),
        });
        if let Some(r) = &m.failure_reason {
            v["failureReason"] = r.clone().into();
        }
        for k in [
            "description",
            "encryptionKeyArn",
            "memoryExecutionRoleArn",
            "indexedKeys",
            "namespaceKeys",
            "streamDeliveryResources",
        ] {
            if let Some(x) = m.spec.get(k) {
                v[k] = x.clone();
            }
        }
        v
    }

    fn arn(&self, id: &str) -> String {
        let p = self.partition();
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:memory/{id}",
            p.region, p.account_id
        )
    }

    /// A memory row from the cache or the store.
    pub(crate) async fn memory_row(&self, id: &str) -> Result<Option<MemoryRow>, ApiError> {
        if let Some(m) = self.inner.cache.read().await.get(id) {
            return Ok(Some(m.clone()));
        }
        let m = self.inner.store.memory(id).await.map_err(internal)?;
        if let Some(m) = &m {
            self.inner
                .cache
                .write()
                .await
                .insert(m.id.clone(), m.clone());
        }
        Ok(m)
    }

    /// A memory the data plane may use: it exists and is not being deleted.
    pub(crate) async fn usable(&self, id: &str) -> Result<MemoryRow, ApiError> {
        match self.memory_row(id).await? {
            Some(m) if m.status != "DELETING" && m.status != "FAILED" => Ok(m),
            _ => Err(ApiError::not_found(format!("memory {id} not found"))),
        }
    }

    async fn save(
        &self,
        m: &MemoryRow,
        tok: Option<&TokenRow>,
        insert: bool,
    ) -> Result<(), ApiError> {
        let res = if insert {
            self.inner.store.insert_memory(m, tok).await
        } else {
            self.inner.store.put_memory(m, tok).await
        };
        match res {
            Ok(()) => {}
            Err(berth_store::Error::AlreadyExists("memory name")) => {
                return Err(ApiError {
                    reason: Some("ResourceConflict"),
                    ..ApiError::new(
                        ErrorKind::Validation,
                        format!("a memory named {} already exists", m.name),
                    )
                });
            }
            Err(e) => return Err(internal(e)),
        }
        self.inner
            .cache
            .write()
            .await
            .insert(m.id.clone(), m.clone());
        Ok(())
    }

    async fn replay(&self, op: &str, input: &Value) -> Result<Option<Value>, ApiError> {
        let Some(t) = str_of(input, "clientToken").filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match self.inner.store.token(op, t).await.map_err(internal)? {
            Some(r) if r.request_hash == request_hash(input) => Ok(Some(r.response)),
            Some(_) => Err(ApiError::idempotent_mismatch()),
            None => Ok(None),
        }
    }

    fn remember(op: &str, input: &Value, response: &Value) -> Option<TokenRow> {
        str_of(input, "clientToken")
            .filter(|t| !t.is_empty())
            .map(|t| TokenRow {
                operation: op.to_owned(),
                token: t.to_owned(),
                request_hash: request_hash(input),
                response: response.clone(),
                created_at: now_millis(),
            })
    }

    /// `CreateMemory`.
    pub async fn create_memory(&self, input: Value) -> Result<Value, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        if let Some(r) = self.replay("CreateMemory", &input).await? {
            return Ok(r);
        }
        let name = req_str(&input, "name")?.to_owned();
        let now = now_millis();
        let mut spec = Map::new();
        for k in [
            "description",
            "encryptionKeyArn",
            "memoryExecutionRoleArn",
            "indexedKeys",
            "namespaceKeys",
            "streamDeliveryResources",
        ] {
            if let Some(v) = input.get(k) {
                spec.insert(k.to_owned(), v.clone());
            }
        }
        let spec = Value::Object(spec);
        let keys = namespace_keys(&spec);
        for (i, k) in keys.iter().enumerate() {
            check_variable_name(&format!("namespaceKeys.{}.key", i + 1), k)?;
        }
        let list: Vec<Value> = input
            .get("memoryStrategies")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| new_strategy(s, &keys, now))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        check_unique_names(&list)?;
        let mut spec = spec;
        spec["strategies"] = Value::Array(list);
        let m = MemoryRow {
            id: format!("{name}-{}", random_alnum(10)),
            name,
            status: "CREATING".into(),
            failure_reason: None,
            event_expiry_days: input
                .get("eventExpiryDuration")
                .and_then(Value::as_u64)
                .unwrap_or(90) as u32,
            spec,
            created_at: now,
            updated_at: now,
        };
        let response = json!({"memory": self.memory_body(&m)});
        let tok = Self::remember("CreateMemory", &input, &response);
        self.save(&m, tok.as_ref(), true).await?;
        info!(memory_id = %m.id, "memory created");
        self.spawn_activation(m.id.clone());
        Ok(response)
    }

    /// Moves a memory and its strategies from CREATING to ACTIVE, off the request path (as
    /// AgentCore does, so clients written against it poll and see the same transitions).
    fn spawn_activation(&self, id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.activate(&id).await {
                error!(memory_id = %id, error = %e, "memory activation failed");
            }
        });
    }

    async fn activate(&self, id: &str) -> Result<(), ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        let Some(mut m) = self.memory_row(id).await? else {
            return Ok(());
        };
        if m.status == "DELETING" {
            return Ok(());
        }
        let now = now_millis();
        let mut list = strategies(&m.spec);
        for s in &mut list {
            if str_of(s, "status") == Some("CREATING") {
                s["status"] = "ACTIVE".into();
                s["updatedAt"] = epoch_seconds(now).into();
            }
        }
        m.spec["strategies"] = Value::Array(list);
        if m.status == "CREATING" || m.status == "UPDATING" {
            m.status = "ACTIVE".into();
        }
        m.updated_at = now;
        self.save(&m, None, false).await?;
        info!(memory_id = %id, "memory active");
        Ok(())
    }

    /// Resumes activations and deletions a previous process left unfinished.
    pub(crate) async fn resume(&self) -> Result<(), berth_store::Error> {
        for status in ["CREATING", "UPDATING"] {
            for m in self.inner.store.memories_in_status(status).await? {
                self.spawn_activation(m.id);
            }
        }
        for m in self.inner.store.memories_in_status("DELETING").await? {
            self.spawn_purge_memory(m.id);
        }
        Ok(())
    }

    /// `GetMemory`.
    pub async fn get_memory(&self, input: Value) -> Result<Value, ApiError> {
        let id = req_str(&input, "memoryId")?;
        match self.memory_row(id).await? {
            Some(m) => Ok(json!({"memory": self.memory_body(&m)})),
            None => Err(ApiError::not_found(format!("memory {id} not found"))),
        }
    }

    /// `ListMemories`.
    pub async fn list_memories(&self, input: Value) -> Result<Value, ApiError> {
        let limit = max_results(&input, 100);
        let after = str_of(&input, "nextToken").map(untoken_pair).transpose()?;
        let mut rows = self
            .inner
            .store
            .list_memories(after, limit + 1)
            .await
            .map_err(internal)?;
        let next = (rows.len() > limit as usize).then(|| {
            rows.truncate(limit as usize);
            rows.last()
                .map(|m| token(&[&m.created_at.to_string(), &m.id]))
        });
        let memories: Vec<Value> = rows
            .iter()
            .map(|m| {
                json!({
                    "arn": self.arn(&m.id),
                    "id": m.id,
                    "status": m.status,
                    "createdAt": epoch_seconds(m.created_at),
                    "updatedAt": epoch_seconds(m.updated_at),
                })
            })
            .collect();
        let mut out = json!({ "memories": memories });
        if let Some(Some(t)) = next {
            out["nextToken"] = t.into();
        }
        Ok(out)
    }

    /// `UpdateMemory`: description, expiry, and strategies added, modified or deleted.
    pub async fn update_memory(&self, input: Value) -> Result<Value, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        if let Some(r) = self.replay("UpdateMemory", &input).await? {
            return Ok(r);
        }
        let id = req_str(&input, "memoryId")?;
        let Some(mut m) = self.memory_row(id).await? else {
            return Err(ApiError::not_found(format!("memory {id} not found")));
        };
        if m.status == "DELETING" {
            return Err(ApiError::conflict(format!("memory {id} is being deleted")));
        }
        let now = now_millis();
        if let Some(d) = input.get("description") {
            m.spec["description"] = d.clone();
        }
        if let Some(r) = input.get("memoryExecutionRoleArn") {
            m.spec["memoryExecutionRoleArn"] = r.clone();
        }
        if let Some(s) = input.get("streamDeliveryResources") {
            m.spec["streamDeliveryResources"] = s.clone();
        }
        if let Some(k) = input.get("namespaceKeys") {
            m.spec["namespaceKeys"] = k.clone();
        }
        if let Some(add) = input.get("addIndexedKeys").and_then(Value::as_array) {
            let mut keys = m
                .spec
                .get("indexedKeys")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for k in add {
                if !keys.iter().any(|x| x.get("key") == k.get("key")) {
                    keys.push(k.clone());
                }
            }
            m.spec["indexedKeys"] = Value::Array(keys);
        }
        if let Some(d) = input.get("eventExpiryDuration").and_then(Value::as_u64) {
            m.event_expiry_days = d as u32;
        }
        let keys = namespace_keys(&m.spec);
        for (i, k) in keys.iter().enumerate() {
            check_variable_name(&format!("namespaceKeys.{}.key", i + 1), k)?;
        }
        let mut list = strategies(&m.spec);
        let mut changed_strategies = false;
        if let Some(ms) = input.get("memoryStrategies") {
            let ids = |s: &Value| str_of(s, "memoryStrategyId").unwrap_or_default().to_owned();
            for d in ms
                .get("deleteMemoryStrategies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let sid = ids(d);
                let before = list.len();
                list.retain(|s| str_of(s, "strategyId") != Some(sid.as_str()));
                if list.len() == before {
                    return Err(ApiError::not_found(format!(
                        "memory strategy {sid} not found in memory {id}"
                    )));
                }
                changed_strategies = true;
            }
            for md in ms
                .get("modifyMemoryStrategies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let sid = ids(md);
                let Some(s) = list
                    .iter_mut()
                    .find(|s| str_of(s, "strategyId") == Some(sid.as_str()))
                else {
                    return Err(ApiError::not_found(format!(
                        "memory strategy {sid} not found in memory {id}"
                    )));
                };
                if let Some(d) = md.get("description") {
                    s["description"] = d.clone();
                }
                if let Some(t) = md
                    .get("namespaceTemplates")
                    .or_else(|| md.get("namespaces"))
                    .and_then(Value::as_array)
                {
                    let t: Vec<String> = t
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    check_templates(&t, &keys)?;
                    s["namespaces"] = json!(t);
                    s["namespaceTemplates"] = json!(t);
                }
                if let Some(schema) = md.get("memoryRecordSchema") {
                    s["memoryRecordSchema"] = schema.clone();
                }
                if let Some(days) = md
                    .get("recordExpirySpecification")
                    .and_then(|r| r.get("recordExpiryDurationDays"))
                {
                    s["recordExpiryDurationDays"] = days.clone();
                }
                if let Some(cfg) = md.get("configuration") {
                    // Modification inputs are already in the output's wrapped shape; keep the
                    // override type the strategy was created with.
                    let ty = s.get("configuration").and_then(|c| c.get("type")).cloned();
                    let mut c = cfg.clone();
                    if let (Some(ty), Some(o)) = (ty, c.as_object_mut()) {
                        o.insert("type".into(), ty);
                    }
                    s["configuration"] = c;
                }
                s["updatedAt"] = epoch_seconds(now).into();
                changed_strategies = true;
            }
            for a in ms
                .get("addMemoryStrategies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                list.push(new_strategy(a, &keys, now)?);
                changed_strategies = true;
            }
        }
        check_unique_names(&list)?;
        m.spec["strategies"] = Value::Array(list);
        m.updated_at = now;
        let activating = changed_strategies
            && strategies(&m.spec)
                .iter()
                .any(|s| str_of(s, "status") == Some("CREATING"));
        let response = json!({"memory": self.memory_body(&m)});
        let tok = Self::remember("UpdateMemory", &input, &response);
        self.save(&m, tok.as_ref(), false).await?;
        if activating {
            self.spawn_activation(m.id.clone());
        }
        Ok(response)
    }

    /// `DeleteMemory`: answers DELETING; events, records and jobs go in the background.
    pub async fn delete_memory(&self, input: Value) -> Result<Value, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        if let Some(r) = self.replay("DeleteMemory", &input).await? {
            return Ok(r);
        }
        let id = req_str(&input, "memoryId")?;
        let Some(mut m) = self.memory_row(id).await? else {
            return Err(ApiError::not_found(format!("memory {id} not found")));
        };
        let response = json!({"memoryId": m.id, "status": "DELETING"});
        if m.status != "DELETING" {
            m.status = "DELETING".into();
            m.updated_at = now_millis();
            let tok = Self::remember("DeleteMemory", &input, &response);
            self.save(&m, tok.as_ref(), false).await?;
            self.spawn_purge_memory(m.id.clone());
        }
        Ok(response)
    }

    fn spawn_purge_memory(&self, id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            match this.inner.store.purge_memory(&id).await {
                Ok(()) => {
                    this.inner.cache.write().await.remove(&id);
                    this.inner.index.drop_memory(&id);
                    info!(memory_id = %id, "memory deleted");
                }
                Err(e) => error!(memory_id = %id, error = %e, "memory deletion failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_report_unknown_variables() {
        let t = "/strategies/{memoryStrategyId}/actors/{actorId}/";
        assert_eq!(template_vars(t), ["memoryStrategyId", "actorId"]);
        assert_eq!(
            fill_template(t, &[("memoryStrategyId", "s-1"), ("actorId", "a")]).unwrap(),
            "/strategies/s-1/actors/a/"
        );
        assert!(fill_template(t, &[("actorId", "a")]).is_none());
        assert!(check_templates(&["/x/{tenant}/".into()], &[]).is_err());
        assert!(check_templates(&["/x/{tenant}/".into()], &["tenant".into()]).is_ok());
        assert!(check_variable_name("k", "actorId").is_err());
        assert!(check_variable_name("k", "sessionId").is_err());
        assert!(check_variable_name("k", "tenant2").is_ok());
        assert!(check_variable_name("k", "Tenant").is_err());
    }

    #[test]
    fn strategies_get_types_ids_and_default_namespaces() {
        let s = new_strategy(&json!({"summaryMemoryStrategy": {"name": "sum"}}), &[], 0).unwrap();
        assert_eq!(s["type"], "SUMMARIZATION");
        assert_eq!(s["status"], "CREATING");
        assert!(s["strategyId"].as_str().unwrap().starts_with("sum-"));
        assert_eq!(
            s["namespaces"][0],
            "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}/"
        );
        let c = new_strategy(
            &json!({"customMemoryStrategy": {"name": "c", "configuration": {"semanticOverride": {
                "extraction": {"appendToPrompt": "p", "modelId": "m"}}}}}),
            &[],
            0,
        )
        .unwrap();
        assert_eq!(c["configuration"]["type"], "SEMANTIC_OVERRIDE");
        assert_eq!(
            c["configuration"]["extraction"]["customExtractionConfiguration"]["semanticExtractionOverride"]
                ["modelId"],
            "m"
        );
    }
}
