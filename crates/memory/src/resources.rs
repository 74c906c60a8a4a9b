//! The control plane of memory: CreateMemory, GetMemory, ListMemories, UpdateMemory,
//! DeleteMemory, and the strategies with their namespace templates.
//!
//! ```text
//! memory:   CREATING --activation--> ACTIVE --DeleteMemory--> DELETING --purge--> gone
//! strategy: CREATING --activation--> ACTIVE ; deleted strategies disappear at once
//! ```

use crate::Memory;
use crate::wire::{internal, invalid, max_results, stored, to_stored, token, untoken_pair};
use berth_api::memory::{
    CreateMemoryRequest, DeleteMemoryRequest, DeleteMemoryResponse, GetMemoryRequest, IndexedKey,
    ListMemoriesRequest, ListMemoriesResponse, MemoryDescription, MemoryResponse, MemoryStrategy,
    MemoryStrategyInput, MemorySummary, NamespaceKeyEntry, UpdateMemoryRequest,
};
use berth_api::{ApiError, ErrorKind};
use berth_store::memory::{MemoryRow, TokenRow};
use berth_types::{epoch_seconds, now_millis, random_alnum};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, info};

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

/// What identifies a request for idempotency: its members other than `clientToken`, hashed.
fn request_hash(input: &impl Serialize) -> Result<String, ApiError> {
    let mut v = to_stored("request", input)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("clientToken");
    }
    Ok(hex::encode(Sha256::digest(v.to_string().as_bytes())))
}

/// What Berth keeps in [`MemoryRow::spec`]: the memory's optional members and its strategies
/// (in output shape, so they are answered as stored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_execution_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_keys: Option<Vec<IndexedKey>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_keys: Option<Vec<NamespaceKeyEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_delivery_resources: Option<Value>,
    #[serde(default)]
    pub strategies: Vec<MemoryStrategy>,
}

impl Spec {
    /// The spec of a stored memory.
    pub(crate) fn of(m: &MemoryRow) -> Result<Self, ApiError> {
        stored("memory spec", m.spec.clone())
    }

    /// The custom namespace variables' names.
    fn keys(&self) -> Vec<String> {
        self.namespace_keys
            .iter()
            .flatten()
            .map(|k| k.key.clone())
            .collect()
    }
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
fn new_strategy(
    input: &MemoryStrategyInput,
    custom_keys: &[String],
    now: i64,
) -> Result<MemoryStrategy, ApiError> {
    let (kind, body) = input.parts();
    let templates: Vec<String> = body
        .templates()
        .cloned()
        .unwrap_or_else(|| vec![default_namespace(kind).to_owned()]);
    check_templates(&templates, custom_keys)?;
    let mut configuration = None;
    if kind == "CUSTOM" {
        configuration = body
            .configuration
            .as_ref()
            .map(custom_configuration)
            .filter(|c| !c.is_null());
    }
    if kind == "EPISODIC"
        && let Some(r) = &body.reflection_configuration
    {
        configuration = Some(json!({"reflection": {"episodicReflectionConfiguration": r}}));
    }
    Ok(MemoryStrategy {
        strategy_id: format!("{}-{}", body.name, random_alnum(10)),
        name: body.name.clone(),
        strategy_type: kind.to_owned(),
        namespaces: templates.clone(),
        namespace_templates: templates,
        status: "CREATING".into(),
        created_at: epoch_seconds(now),
        updated_at: epoch_seconds(now),
        description: body.description.clone(),
        memory_record_schema: body.memory_record_schema.clone(),
        record_expiry_duration_days: body
            .record_expiry_specification
            .as_ref()
            .and_then(|r| r.record_expiry_duration_days),
        configuration,
    })
}

fn check_unique_names(list: &[MemoryStrategy]) -> Result<(), ApiError> {
    let mut names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
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

fn check_namespace_keys(keys: &[String]) -> Result<(), ApiError> {
    for (i, k) in keys.iter().enumerate() {
        check_variable_name(&format!("namespaceKeys.{}.key", i + 1), k)?;
    }
    Ok(())
}

impl Memory {
    /// The full `Memory` output shape.
    pub(crate) fn memory_body(&self, m: &MemoryRow) -> Result<MemoryDescription, ApiError> {
        let spec = Spec::of(m)?;
        Ok(MemoryDescription {
            arn: self.arn(&m.id),
            id: m.id.clone(),
            name: m.name.clone(),
            event_expiry_duration: m.event_expiry_days,
            status: m.status.clone(),
            created_at: m.created_at,
            updated_at: m.updated_at,
            strategies: spec.strategies,
            failure_reason: m.failure_reason.clone(),
            description: spec.description,
            encryption_key_arn: spec.encryption_key_arn,
            memory_execution_role_arn: spec.memory_execution_role_arn,
            indexed_keys: spec.indexed_keys,
            namespace_keys: spec.namespace_keys,
            stream_delivery_resources: spec.stream_delivery_resources,
        })
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
        let max_age = self.inner.opts.cache_max_age;
        if let Some((m, at)) = self.inner.cache.read().await.get(id)
            && max_age.is_none_or(|age| at.elapsed() < age)
        {
            return Ok(Some(m.clone()));
        }
        let m = self.inner.store.memory(id).await.map_err(internal)?;
        if let Some(m) = &m {
            self.inner
                .cache
                .write()
                .await
                .insert(m.id.clone(), (m.clone(), std::time::Instant::now()));
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
            .insert(m.id.clone(), (m.clone(), std::time::Instant::now()));
        Ok(())
    }

    /// The answer already given to a request with this client token, if any.
    async fn replay<T: DeserializeOwned>(
        &self,
        op: &str,
        token: Option<&str>,
        hash: &str,
    ) -> Result<Option<T>, ApiError> {
        let Some(t) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match self.inner.store.token(op, t).await.map_err(internal)? {
            Some(r) if r.request_hash == hash => {
                Ok(Some(stored("idempotent response", r.response)?))
            }
            Some(_) => Err(ApiError::idempotent_mismatch()),
            None => Ok(None),
        }
    }

    /// The token row that makes a retry with the same client token answer `response` again.
    fn remember(
        op: &str,
        token: Option<&str>,
        hash: String,
        response: &impl Serialize,
    ) -> Result<Option<TokenRow>, ApiError> {
        let Some(t) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(TokenRow {
            operation: op.to_owned(),
            token: t.to_owned(),
            request_hash: hash,
            response: to_stored("response", response)?,
            created_at: now_millis(),
        }))
    }

    /// `CreateMemory`.
    pub async fn create_memory(
        &self,
        input: CreateMemoryRequest,
    ) -> Result<MemoryResponse, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self.replay("CreateMemory", token, &hash).await? {
            return Ok(r);
        }
        let now = now_millis();
        let mut spec = Spec {
            description: input.description.clone(),
            encryption_key_arn: input.encryption_key_arn.clone(),
            memory_execution_role_arn: input.memory_execution_role_arn.clone(),
            indexed_keys: input.indexed_keys.clone(),
            namespace_keys: input.namespace_keys.clone(),
            stream_delivery_resources: input.stream_delivery_resources.clone(),
            strategies: Vec::new(),
        };
        let keys = spec.keys();
        check_namespace_keys(&keys)?;
        spec.strategies = input
            .memory_strategies
            .iter()
            .flatten()
            .map(|s| new_strategy(s, &keys, now))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_names(&spec.strategies)?;
        let m = MemoryRow {
            id: format!("{}-{}", input.name, random_alnum(10)),
            name: input.name.clone(),
            status: "CREATING".into(),
            failure_reason: None,
            event_expiry_days: input.event_expiry_duration.unwrap_or(90),
            spec: to_stored("memory spec", &spec)?,
            created_at: now,
            updated_at: now,
        };
        let response = MemoryResponse {
            memory: self.memory_body(&m)?,
        };
        let tok = Self::remember("CreateMemory", token, hash, &response)?;
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
        let mut spec = Spec::of(&m)?;
        for s in &mut spec.strategies {
            if s.status == "CREATING" {
                s.status = "ACTIVE".into();
                s.updated_at = epoch_seconds(now);
            }
        }
        m.spec = to_stored("memory spec", &spec)?;
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
    pub async fn get_memory(&self, input: GetMemoryRequest) -> Result<MemoryResponse, ApiError> {
        let id = &input.memory_id;
        match self.memory_row(id).await? {
            Some(m) => Ok(MemoryResponse {
                memory: self.memory_body(&m)?,
            }),
            None => Err(ApiError::not_found(format!("memory {id} not found"))),
        }
    }

    /// `ListMemories`.
    pub async fn list_memories(
        &self,
        input: ListMemoriesRequest,
    ) -> Result<ListMemoriesResponse, ApiError> {
        let limit = max_results(input.max_results, 100);
        let after = input.next_token.as_deref().map(untoken_pair).transpose()?;
        let mut rows = self
            .inner
            .store
            .list_memories(after, limit + 1)
            .await
            .map_err(internal)?;
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows
                .last()
                .map(|m| token(&[&m.created_at.to_string(), &m.id]));
        }
        let memories = rows
            .iter()
            .map(|m| MemorySummary {
                arn: self.arn(&m.id),
                id: m.id.clone(),
                status: m.status.clone(),
                created_at: m.created_at,
                updated_at: m.updated_at,
            })
            .collect();
        Ok(ListMemoriesResponse {
            memories,
            next_token,
        })
    }

    /// `UpdateMemory`: description, expiry, and strategies added, modified or deleted.
    pub async fn update_memory(
        &self,
        input: UpdateMemoryRequest,
    ) -> Result<MemoryResponse, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self.replay("UpdateMemory", token, &hash).await? {
            return Ok(r);
        }
        let id = &input.memory_id;
        let Some(mut m) = self.memory_row(id).await? else {
            return Err(ApiError::not_found(format!("memory {id} not found")));
        };
        if m.status == "DELETING" {
            return Err(ApiError::conflict(format!("memory {id} is being deleted")));
        }
        let now = now_millis();
        let mut spec = Spec::of(&m)?;
        if let Some(d) = &input.description {
            spec.description = Some(d.clone());
        }
        if let Some(r) = &input.memory_execution_role_arn {
            spec.memory_execution_role_arn = Some(r.clone());
        }
        if let Some(s) = &input.stream_delivery_resources {
            spec.stream_delivery_resources = Some(s.clone());
        }
        if let Some(k) = &input.namespace_keys {
            spec.namespace_keys = Some(k.clone());
        }
        if let Some(add) = &input.add_indexed_keys {
            let keys = spec.indexed_keys.get_or_insert_with(Vec::new);
            for k in add {
                if !keys.iter().any(|x| x.key == k.key) {
                    keys.push(k.clone());
                }
            }
        }
        if let Some(d) = input.event_expiry_duration {
            m.event_expiry_days = d;
        }
        let keys = spec.keys();
        check_namespace_keys(&keys)?;
        let list = &mut spec.strategies;
        let mut changed_strategies = false;
        if let Some(ms) = &input.memory_strategies {
            for d in ms.delete_memory_strategies.iter().flatten() {
                let sid = &d.memory_strategy_id;
                let before = list.len();
                list.retain(|s| &s.strategy_id != sid);
                if list.len() == before {
                    return Err(ApiError::not_found(format!(
                        "memory strategy {sid} not found in memory {id}"
                    )));
                }
                changed_strategies = true;
            }
            for md in ms.modify_memory_strategies.iter().flatten() {
                let sid = &md.memory_strategy_id;
                let Some(s) = list.iter_mut().find(|s| &s.strategy_id == sid) else {
                    return Err(ApiError::not_found(format!(
                        "memory strategy {sid} not found in memory {id}"
                    )));
                };
                if let Some(d) = &md.description {
                    s.description = Some(d.clone());
                }
                if let Some(t) = md.templates() {
                    check_templates(t, &keys)?;
                    s.namespaces = t.clone();
                    s.namespace_templates = t.clone();
                }
                if let Some(schema) = &md.memory_record_schema {
                    s.memory_record_schema = Some(schema.clone());
                }
                if let Some(days) = md
                    .record_expiry_specification
                    .as_ref()
                    .and_then(|r| r.record_expiry_duration_days)
                {
                    s.record_expiry_duration_days = Some(days);
                }
                if let Some(cfg) = &md.configuration {
                    // Modification inputs are already in the output's wrapped shape; keep the
                    // override type the strategy was created with.
                    let ty = s
                        .configuration
                        .as_ref()
                        .and_then(|c| c.get("type"))
                        .cloned();
                    let mut c = cfg.clone();
                    if let (Some(ty), Some(o)) = (ty, c.as_object_mut()) {
                        o.insert("type".into(), ty);
                    }
                    s.configuration = Some(c);
                }
                s.updated_at = epoch_seconds(now);
                changed_strategies = true;
            }
            for a in ms.add_memory_strategies.iter().flatten() {
                list.push(new_strategy(a, &keys, now)?);
                changed_strategies = true;
            }
        }
        check_unique_names(&spec.strategies)?;
        let activating =
            changed_strategies && spec.strategies.iter().any(|s| s.status == "CREATING");
        m.spec = to_stored("memory spec", &spec)?;
        m.updated_at = now;
        let response = MemoryResponse {
            memory: self.memory_body(&m)?,
        };
        let tok = Self::remember("UpdateMemory", token, hash, &response)?;
        self.save(&m, tok.as_ref(), false).await?;
        if activating {
            self.spawn_activation(m.id.clone());
        }
        Ok(response)
    }

    /// `DeleteMemory`: answers DELETING; events, records and jobs go in the background.
    pub async fn delete_memory(
        &self,
        input: DeleteMemoryRequest,
    ) -> Result<DeleteMemoryResponse, ApiError> {
        let _g = self.inner.resource_lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self.replay("DeleteMemory", token, &hash).await? {
            return Ok(r);
        }
        let id = &input.memory_id;
        let Some(mut m) = self.memory_row(id).await? else {
            return Err(ApiError::not_found(format!("memory {id} not found")));
        };
        let response = DeleteMemoryResponse {
            memory_id: m.id.clone(),
            status: "DELETING".into(),
        };
        if m.status != "DELETING" {
            m.status = "DELETING".into();
            m.updated_at = now_millis();
            let tok = Self::remember("DeleteMemory", token, hash, &response)?;
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
        let input = |v: Value| serde_json::from_value::<MemoryStrategyInput>(v).unwrap();
        let s = new_strategy(
            &input(json!({"summaryMemoryStrategy": {"name": "sum"}})),
            &[],
            0,
        )
        .unwrap();
        assert_eq!(s.strategy_type, "SUMMARIZATION");
        assert_eq!(s.status, "CREATING");
        assert!(s.strategy_id.starts_with("sum-"));
        assert_eq!(
            s.namespaces[0],
            "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}/"
        );
        let c = new_strategy(
            &input(
                json!({"customMemoryStrategy": {"name": "c", "configuration": {"semanticOverride": {
                "extraction": {"appendToPrompt": "p", "modelId": "m"}}}}}),
            ),
            &[],
            0,
        )
        .unwrap();
        let cfg = c.configuration.unwrap();
        assert_eq!(cfg["type"], "SEMANTIC_OVERRIDE");
        assert_eq!(
            cfg["extraction"]["customExtractionConfiguration"]["semanticExtractionOverride"]["modelId"],
            "m"
        );
    }
}
