//! SQLite SQL of roles and access keys (rows in [`crate::authz`]).

use super::cols::corrupt;
use crate::Error;
use crate::authz::{AccessKeyRow, ResourcePolicyRow, RoleRow};
use berth_types::EpochMillis;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

fn role_row(r: &SqliteRow) -> Result<RoleRow, Error> {
    let policies: String = r.try_get("policies")?;
    Ok(RoleRow {
        name: r.try_get("name")?,
        arn: r.try_get("arn")?,
        policies: serde_json::from_str(&policies).map_err(|e| corrupt("roles", e))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn key_row(r: &SqliteRow) -> Result<AccessKeyRow, Error> {
    let policy: String = r.try_get("policy")?;
    let status: String = r.try_get("status")?;
    Ok(AccessKeyRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        policy: serde_json::from_str(&policy).map_err(|e| corrupt("access_keys", e))?,
        active: match status.as_str() {
            "Active" => true,
            "Inactive" => false,
            other => return Err(corrupt("access_keys", format!("unknown status {other:?}"))),
        },
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub(crate) async fn put_role(tx: &mut SqliteConnection, r: &RoleRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO roles (name, arn, policies, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET arn = excluded.arn, policies = excluded.policies, \
         updated_at = excluded.updated_at",
    )
    .bind(&r.name)
    .bind(&r.arn)
    .bind(serde_json::Value::from(r.policies.clone()).to_string())
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn delete_role(tx: &mut SqliteConnection, name: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM roles WHERE name = $1")
        .bind(name)
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn insert_key(tx: &mut SqliteConnection, k: &AccessKeyRow) -> Result<(), Error> {
    let res = sqlx::query(
        "INSERT INTO access_keys (id, name, policy, status, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&k.id)
    .bind(&k.name)
    .bind(k.policy.to_string())
    .bind(if k.active { "Active" } else { "Inactive" })
    .bind(k.created_at)
    .bind(k.revoked_at)
    .execute(tx)
    .await;
    match res {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            Err(Error::AlreadyExists("access key"))
        }
        other => other.map(drop).map_err(Error::from),
    }
}

pub(crate) async fn revoke_key(
    tx: &mut SqliteConnection,
    id: &str,
    at: EpochMillis,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE access_keys SET status = 'Inactive', revoked_at = $2 WHERE id = $1 AND status = 'Active'",
    )
    .bind(id)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn role(pool: &SqlitePool, name: &str) -> Result<Option<RoleRow>, Error> {
    sqlx::query("SELECT * FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(role_row)
        .transpose()
}

pub(crate) async fn roles(pool: &SqlitePool) -> Result<Vec<RoleRow>, Error> {
    sqlx::query("SELECT * FROM roles ORDER BY name")
        .fetch_all(pool)
        .await?
        .iter()
        .map(role_row)
        .collect()
}

pub(crate) async fn access_key(pool: &SqlitePool, id: &str) -> Result<Option<AccessKeyRow>, Error> {
    sqlx::query("SELECT * FROM access_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(key_row)
        .transpose()
}

pub(crate) async fn access_keys(pool: &SqlitePool) -> Result<Vec<AccessKeyRow>, Error> {
    sqlx::query("SELECT * FROM access_keys ORDER BY created_at, id")
        .fetch_all(pool)
        .await?
        .iter()
        .map(key_row)
        .collect()
}

pub(crate) async fn put_resource_policy(
    tx: &mut SqliteConnection,
    r: &ResourcePolicyRow,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO resource_policies (resource_arn, policy, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (resource_arn) DO UPDATE SET policy = excluded.policy, \
         updated_at = excluded.updated_at",
    )
    .bind(&r.resource_arn)
    .bind(&r.policy)
    .bind(r.updated_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn delete_resource_policy(
    tx: &mut SqliteConnection,
    arn: &str,
    children: bool,
) -> Result<(), Error> {
    if children {
        // `LIKE` with the ARN's own `_`/`%` escaped, so only ARNs under this one match.
        let escaped = arn
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        sqlx::query(
            "DELETE FROM resource_policies WHERE resource_arn = $1 \
             OR resource_arn LIKE $2 ESCAPE '\\'",
        )
        .bind(arn)
        .bind(format!("{escaped}/%"))
        .execute(tx)
        .await?;
    } else {
        sqlx::query("DELETE FROM resource_policies WHERE resource_arn = $1")
            .bind(arn)
            .execute(tx)
            .await?;
    }
    Ok(())
}

pub(crate) async fn resource_policy(
    pool: &SqlitePool,
    arn: &str,
) -> Result<Option<ResourcePolicyRow>, Error> {
    let Some(r) = sqlx::query("SELECT * FROM resource_policies WHERE resource_arn = $1")
        .bind(arn)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(ResourcePolicyRow {
        resource_arn: r.try_get("resource_arn")?,
        policy: r.try_get("policy")?,
        updated_at: r.try_get("updated_at")?,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ControlStore, SqliteStore, Write};
    use serde_json::json;

    #[tokio::test]
    async fn roles_and_keys_round_trip_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let role = RoleRow {
            name: "ci".into(),
            arn: "arn:aws:iam::000000000000:role/ci".into(),
            policies: vec![json!({"Statement": []})],
            created_at: 1,
            updated_at: 1,
        };
        s.apply(vec![Write::PutRole(role.clone())]).await.unwrap();
        let replaced = RoleRow {
            policies: vec![
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
            ],
            created_at: 5,
            updated_at: 5,
            ..role.clone()
        };
        s.apply(vec![Write::PutRole(replaced.clone())])
            .await
            .unwrap();
        let got = s.role("ci").await.unwrap().unwrap();
        // A put replaces the policies but keeps the creation time.
        assert_eq!(got.policies, replaced.policies);
        assert_eq!((got.created_at, got.updated_at), (1, 5));
        assert_eq!(s.roles().await.unwrap().len(), 1);
        s.apply(vec![Write::DeleteRole { name: "ci".into() }])
            .await
            .unwrap();
        assert!(s.role("ci").await.unwrap().is_none());

        let key = AccessKeyRow {
            id: "BKAKTEST".into(),
            name: "pipeline".into(),
            policy: json!({"Statement": []}),
            active: true,
            created_at: 2,
            revoked_at: None,
        };
        s.apply(vec![Write::InsertAccessKey(key.clone())])
            .await
            .unwrap();
        assert!(matches!(
            s.apply(vec![Write::InsertAccessKey(key.clone())]).await,
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(s.access_key("BKAKTEST").await.unwrap(), Some(key.clone()));
        s.apply(vec![Write::RevokeAccessKey {
            id: "BKAKTEST".into(),
            at: 9,
        }])
        .await
        .unwrap();
        let revoked = s.access_key("BKAKTEST").await.unwrap().unwrap();
        assert!(!revoked.active);
        assert_eq!(revoked.revoked_at, Some(9));
        assert_eq!(s.access_keys().await.unwrap(), vec![revoked]);
    }
}
