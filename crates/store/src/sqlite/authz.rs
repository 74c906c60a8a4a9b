//! The SQL of roles, access keys and resource policies on SQLite: the shared SQL of
//! [`crate::sql::authz`].

crate::sql::authz::authz_sql!(crate::SqliteStore, sqlx::Sqlite);
pub(crate) use sql::*;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Error;
    use crate::authz::{AccessKeyRow, RoleRow};
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
