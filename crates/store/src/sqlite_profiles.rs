//! The SQLite implementation of profile storage: schemas, profile rows,
//! lookup terms and attachment rows, each call filtered by organisation.

use domain::{OrgId, ProfileId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::audit::AuditAppend;
use crate::profiles::{AttachmentRow, ProfileRow, SchemaRecord, Term, TermFilter};
use crate::sqlite::SqliteStore;
use crate::{Result, StoreError, conflict_or};

macro_rules! profile_columns {
    () => {
        "org_id, id, revision, schema_version, owner_user_id, record_key, key_version, field_names, plain, sealed, created_at, created_by, updated_at, updated_by"
    };
}
macro_rules! attachment_columns {
    () => {
        "org_id, profile_id, id, name_token, name_sealed, content_type, size, blob_key, created_at, created_by"
    };
}

fn version(v: i64, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt { what, why: "version out of range".into() })
}

fn profile_from_row(r: &SqliteRow) -> Result<ProfileRow> {
    Ok(ProfileRow {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        id: ProfileId::from_uuid(r.try_get("id")?),
        revision: r.try_get("revision")?,
        schema_version: version(r.try_get("schema_version")?, "profile")?,
        owner: r.try_get::<Option<Uuid>, _>("owner_user_id")?.map(UserId::from_uuid),
        record_key: r.try_get("record_key")?,
        key_version: version(r.try_get("key_version")?, "profile")?,
        field_names: r.try_get("field_names")?,
        plain: r.try_get("plain")?,
        sealed: r.try_get("sealed")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

fn attachment_from_row(r: &SqliteRow) -> Result<AttachmentRow> {
    Ok(AttachmentRow {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        profile_id: ProfileId::from_uuid(r.try_get("profile_id")?),
        id: r.try_get("id")?,
        name_token: r.try_get("name_token")?,
        name_sealed: r.try_get("name_sealed")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        blob_key: r.try_get("blob_key")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// Writes a profile's lookup terms inside the caller's transaction.
async fn insert_terms(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, p: &ProfileRow, terms: &[Term]) -> Result<()> {
    for t in terms {
        sqlx::query("INSERT INTO profile_terms (org_id, field, term, profile_id) VALUES (?1, ?2, ?3, ?4)")
            .bind(p.org_id.as_uuid())
            .bind(&t.field)
            .bind(&t.term)
            .bind(p.id.as_uuid())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn current_schema(&self, org: OrgId) -> Result<Option<SchemaRecord>> {
        let row = sqlx::query(
            "SELECT version, fields, created_at, created_by FROM profile_schemas WHERE org_id = ?1
             ORDER BY version DESC LIMIT 1",
        )
        .bind(org.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SchemaRecord {
                org_id: org,
                version: version(r.try_get("version")?, "schema")?,
                fields: r.try_get("fields")?,
                created_at: r.try_get("created_at")?,
                created_by: r.try_get("created_by")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn insert_schema(&self, s: &SchemaRecord, audit: Option<&AuditAppend<'_>>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO profile_schemas (org_id, version, fields, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(s.org_id.as_uuid())
        .bind(i64::from(s.version))
        .bind(&s.fields)
        .bind(s.created_at)
        .bind(&s.created_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "this schema version"))?;
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn has_profiles(&self, org: OrgId) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM profiles WHERE org_id = ?1 LIMIT 1")
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    pub(crate) async fn profile_field_names(&self, org: OrgId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT field_names FROM profiles WHERE org_id = ?1")
            .bind(org.as_uuid())
            .fetch_all(&self.pool)
            .await?)
    }

    pub(crate) async fn insert_profiles(
        &self,
        rows: &[(&ProfileRow, &[Term])],
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (p, terms) in rows {
            sqlx::query(
                "INSERT INTO profiles (org_id, id, revision, schema_version, owner_user_id, record_key, key_version,
                 field_names, plain, sealed, created_at, created_by, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .bind(p.org_id.as_uuid())
            .bind(p.id.as_uuid())
            .bind(p.revision)
            .bind(i64::from(p.schema_version))
            .bind(p.owner.map(|u| u.as_uuid()))
            .bind(&p.record_key)
            .bind(i64::from(p.key_version))
            .bind(&p.field_names)
            .bind(&p.plain)
            .bind(&p.sealed)
            .bind(p.created_at)
            .bind(&p.created_by)
            .bind(p.updated_at)
            .bind(&p.updated_by)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "a profile with this id"))?;
            insert_terms(&mut tx, p, terms).await?;
        }
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn get_profile(&self, org: OrgId, id: ProfileId) -> Result<Option<ProfileRow>> {
        sqlx::query(concat!("SELECT ", profile_columns!(), " FROM profiles WHERE org_id = ?1 AND id = ?2"))
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| profile_from_row(&r))
            .transpose()
    }

    pub(crate) async fn update_profile(
        &self,
        p: &ProfileRow,
        expected_revision: i64,
        terms: Option<&[Term]>,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE profiles SET revision = ?1, schema_version = ?2, owner_user_id = ?3, record_key = ?4,
                 key_version = ?5, field_names = ?6, plain = ?7, sealed = ?8, updated_at = ?9, updated_by = ?10
             WHERE org_id = ?11 AND id = ?12 AND revision = ?13",
        )
        .bind(p.revision)
        .bind(i64::from(p.schema_version))
        .bind(p.owner.map(|u| u.as_uuid()))
        .bind(&p.record_key)
        .bind(i64::from(p.key_version))
        .bind(&p.field_names)
        .bind(&p.plain)
        .bind(&p.sealed)
        .bind(p.updated_at)
        .bind(&p.updated_by)
        .bind(p.org_id.as_uuid())
        .bind(p.id.as_uuid())
        .bind(expected_revision)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(terms) = terms {
            sqlx::query("DELETE FROM profile_terms WHERE org_id = ?1 AND profile_id = ?2")
                .bind(p.org_id.as_uuid())
                .bind(p.id.as_uuid())
                .execute(&mut *tx)
                .await?;
            insert_terms(&mut tx, p, terms).await?;
        }
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn delete_profile(
        &self,
        org: OrgId,
        id: ProfileId,
        expected_revision: i64,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM profiles WHERE org_id = ?1 AND id = ?2 AND revision = ?3")
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(expected_revision)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn list_profiles(
        &self,
        org: OrgId,
        after: Option<ProfileId>,
        limit: u32,
        filters: &[TermFilter],
    ) -> Result<Vec<ProfileRow>> {
        if filters.iter().any(|f| f.terms.is_empty()) {
            // A filter no term can satisfy (e.g. no live key to make a
            // token with): nothing matches, and `IN ()` is not SQL.
            return Ok(Vec::new());
        }
        let mut sql = format!("SELECT {} FROM profiles p WHERE p.org_id = ?1", profile_columns!());
        let mut n = 1;
        if after.is_some() {
            n += 1;
            sql.push_str(&format!(" AND p.id > ?{n}"));
        }
        for f in filters {
            n += 1;
            let field = n;
            let placeholders: Vec<String> = f
                .terms
                .iter()
                .map(|_| {
                    n += 1;
                    format!("?{n}")
                })
                .collect();
            // `id IN (terms)`, not `EXISTS`: SQLite then looks the few
            // matching ids up by key, where with `EXISTS` it walked every
            // profile of the organisation in id order (decrypting each
            // page) and probed the terms for each.
            sql.push_str(&format!(
                " AND p.id IN (SELECT t.profile_id FROM profile_terms t WHERE t.org_id = ?1
                   AND t.field = ?{field} AND t.term IN ({}))",
                placeholders.join(", ")
            ));
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY p.id LIMIT ?{n}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.as_uuid());
        if let Some(after) = after {
            q = q.bind(after.as_uuid());
        }
        for f in filters {
            q = q.bind(&f.field);
            for t in &f.terms {
                q = q.bind(t);
            }
        }
        q.bind(i64::from(limit)).fetch_all(&self.pool).await?.iter().map(profile_from_row).collect()
    }

    pub(crate) async fn profiles_owned_by(&self, user: UserId) -> Result<Vec<(OrgId, ProfileId)>> {
        sqlx::query("SELECT org_id, id FROM profiles WHERE owner_user_id = ?1 ORDER BY org_id, id")
            .bind(user.as_uuid())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((OrgId::from_uuid(r.try_get("org_id")?), ProfileId::from_uuid(r.try_get("id")?))))
            .collect()
    }

    pub(crate) async fn profiles_below_key_version(
        &self,
        org: OrgId,
        version: u32,
        limit: u32,
    ) -> Result<Vec<ProfileRow>> {
        sqlx::query(concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles WHERE org_id = ?1 AND key_version < ?2 ORDER BY id LIMIT ?3"
        ))
        .bind(org.as_uuid())
        .bind(i64::from(version))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(profile_from_row)
        .collect()
    }

    pub(crate) async fn put_attachment(
        &self,
        a: &AttachmentRow,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let old: Option<String> = sqlx::query(
            "DELETE FROM attachments WHERE org_id = ?1 AND profile_id = ?2 AND name_token = ?3 RETURNING blob_key",
        )
        .bind(a.org_id.as_uuid())
        .bind(a.profile_id.as_uuid())
        .bind(&a.name_token)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        sqlx::query(concat!(
            "INSERT INTO attachments (",
            attachment_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .bind(a.org_id.as_uuid())
        .bind(a.profile_id.as_uuid())
        .bind(a.id)
        .bind(&a.name_token)
        .bind(&a.name_sealed)
        .bind(&a.content_type)
        .bind(a.size)
        .bind(&a.blob_key)
        .bind(a.created_at)
        .bind(&a.created_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "an attachment with this name"))?;
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(old)
    }

    pub(crate) async fn attachment(
        &self,
        org: OrgId,
        profile: ProfileId,
        name_token: &[u8],
    ) -> Result<Option<AttachmentRow>> {
        sqlx::query(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE org_id = ?1 AND profile_id = ?2 AND name_token = ?3"
        ))
        .bind(org.as_uuid())
        .bind(profile.as_uuid())
        .bind(name_token)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| attachment_from_row(&r))
        .transpose()
    }

    pub(crate) async fn attachments(&self, org: OrgId, profile: ProfileId) -> Result<Vec<AttachmentRow>> {
        sqlx::query(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE org_id = ?1 AND profile_id = ?2 ORDER BY id"
        ))
        .bind(org.as_uuid())
        .bind(profile.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attachment_from_row)
        .collect()
    }

    pub(crate) async fn delete_attachment(
        &self,
        org: OrgId,
        profile: ProfileId,
        name_token: &[u8],
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let key: Option<String> = sqlx::query(
            "DELETE FROM attachments WHERE org_id = ?1 AND profile_id = ?2 AND name_token = ?3 RETURNING blob_key",
        )
        .bind(org.as_uuid())
        .bind(profile.as_uuid())
        .bind(name_token)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        if key.is_some()
            && let Some(a) = audit
        {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(key)
    }
}
