use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_app::page::Page;
use inkcart_app::ports::{RefreshSession, SessionRepo, Tx, UserQuery, UserRepo, UserSortField};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::ids::SessionFamilyId;
use inkcart_domain::{Email, RefreshTokenId, User, UserId, UserName};
use sea_orm::sea_query::{Expr, ExprTrait as _, Func, LikeExpr, NullOrdering, Value};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, QueryTrait as _, Statement,
};

use super::{OnceSql, SqlStore, TxConn, Unique as _, escape_like, get, order, write};
use crate::dialect::Dialect;
use crate::entity::{refresh_tokens, users};
use crate::error::{db_err, is_foreign_key_violation};
use crate::lite::Row;

/// A user's row, as [`SqlStore::models`] reads it.
fn user_row(row: &Row) -> AppResult<users::Model> {
    Ok(users::Model {
        id: get(row, "id")?,
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        name: get(row, "name")?,
        role: get(row, "role")?,
        tier: get(row, "tier")?,
        email_verified: get(row, "email_verified")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn user_from_model(m: users::Model) -> AppResult<User> {
    let users::Model {
        id,
        email,
        password_hash: _,
        name,
        role,
        tier,
        email_verified,
        created_at,
        updated_at,
    } = m;
    let corrupt = |what: &str| AppError::internal(format!("user {id}: stored {what} is invalid"));
    Ok(User {
        id: UserId::from_uuid(id),
        email: Email::parse(&email).map_err(|_| corrupt("email"))?,
        name: name
            .as_deref()
            .map(UserName::parse)
            .transpose()
            .map_err(|_| corrupt("name"))?,
        role: role.parse().map_err(|_| corrupt("role"))?,
        tier: tier.parse().map_err(|_| corrupt("tier"))?,
        email_verified,
        created_at,
        updated_at,
    })
}

/// The account with this id.
fn user_by_id(id: UserId, dialect: Dialect) -> Statement {
    dialect.build(&users::Entity::find_by_id(id.as_uuid()).into_query())
}

#[async_trait]
impl UserRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, user: &User, password_hash: &str) -> AppResult<()> {
        let model = users::ActiveModel {
            id: Set(user.id.as_uuid()),
            email: Set(user.email.as_str().to_owned()),
            password_hash: Set(password_hash.to_owned()),
            name: Set(user.name.as_ref().map(|n| n.as_str().to_owned())),
            role: Set(user.role.as_str().to_owned()),
            tier: Set(user.tier.as_str().to_owned()),
            email_verified: Set(user.email_verified),
            created_at: Set(user.created_at),
            updated_at: Set(user.updated_at),
        };
        write(tx, &users::Entity::insert(model)).await?;
        Ok(())
    }

    async fn find(&self, id: UserId) -> AppResult<Option<User>> {
        // Every authenticated request reads its account: the text is built once.
        static BY_ID: OnceSql = OnceSql::new();
        let dialect = self.dialect();
        let statement = BY_ID.statement(dialect, vec![Value::from(id.as_uuid())], || {
            user_by_id(id, dialect)
        });
        self.read(statement, user_row)
            .await?
            .pop()
            .map(user_from_model)
            .transpose()
    }

    async fn find_many(&self, ids: &[UserId]) -> AppResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let select =
            users::Entity::find().filter(users::Column::Id.is_in(ids.iter().map(UserId::as_uuid)));
        self.models(select, user_row)
            .await?
            .into_iter()
            .map(user_from_model)
            .collect()
    }

    async fn find_credentials(&self, email: &Email) -> AppResult<Option<(User, String)>> {
        let select = users::Entity::find().filter(users::Column::Email.eq(email.as_str()));
        let Some(model) = self.models(select, user_row).await?.pop() else {
            return Ok(None);
        };
        let hash = model.password_hash.clone();
        Ok(Some((user_from_model(model)?, hash)))
    }

    async fn password_hash(&self, id: UserId) -> AppResult<Option<String>> {
        Ok(self
            .models(users::Entity::find_by_id(id.as_uuid()), user_row)
            .await?
            .pop()
            .map(|m| m.password_hash))
    }

    async fn list(&self, query: &UserQuery) -> AppResult<Page<User>> {
        let mut select = users::Entity::find();
        if let Some(role) = query.role {
            select = select.filter(users::Column::Role.eq(role.as_str()));
        }
        if let Some(term) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let pattern = escape_like(&term.to_lowercase());
            let like = |col: users::Column| {
                Expr::expr(Func::lower(Expr::col(col)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\'))
            };
            select = if query.search_email {
                select.filter(like(users::Column::Email).or(like(users::Column::Name)))
            } else {
                select.filter(like(users::Column::Name))
            };
        }
        let total = select
            .clone()
            .count(&self.db.reader)
            .await
            .map_err(db_err)?;
        let ord = order(query.sort.direction);
        select = match query.sort.field {
            UserSortField::CreatedAt => select.order_by(users::Column::CreatedAt, ord.clone()),
            UserSortField::Email => select.order_by(users::Column::Email, ord.clone()),
            UserSortField::Name => {
                select.order_by_with_nulls(users::Column::Name, ord.clone(), NullOrdering::Last)
            }
        };
        let models = select
            .order_by(users::Column::Id, ord)
            .offset(query.page.offset())
            .limit(query.page.limit)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        Ok(Page {
            items: models
                .into_iter()
                .map(user_from_model)
                .collect::<AppResult<_>>()?,
            page: query.page.page,
            limit: query.page.limit,
            total,
        })
    }

    async fn update(
        &self,
        tx: &mut dyn Tx,
        user: &User,
        password_hash: Option<&str>,
    ) -> AppResult<bool> {
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(user.email.as_str()))
            .col_expr(
                users::Column::Name,
                Expr::value(user.name.as_ref().map(|n| n.as_str().to_owned())),
            )
            .col_expr(users::Column::Role, Expr::value(user.role.as_str()))
            .col_expr(users::Column::Tier, Expr::value(user.tier.as_str()))
            .col_expr(
                users::Column::EmailVerified,
                Expr::value(user.email_verified),
            )
            .col_expr(users::Column::UpdatedAt, Expr::value(user.updated_at));
        if let Some(hash) = password_hash {
            update = update.col_expr(users::Column::PasswordHash, Expr::value(hash));
        }
        let update = update.filter(users::Column::Id.eq(user.id.as_uuid()));
        Ok(write(tx, &update).await? == 1)
    }

    async fn set_password(
        &self,
        tx: &mut dyn Tx,
        id: UserId,
        password_hash: &str,
        email: Option<&str>,
        at: DateTime<Utc>,
    ) -> AppResult<bool> {
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(password_hash))
            .col_expr(users::Column::UpdatedAt, Expr::value(at))
            .filter(users::Column::Id.eq(id.as_uuid()));
        if let Some(email) = email {
            update = update.filter(users::Column::Email.eq(email));
        }
        let result = write(tx, &update).await?;
        Ok(result == 1)
    }

    async fn delete(&self, tx: &mut dyn Tx, id: UserId) -> AppResult<bool> {
        // A transaction from `begin` (through sqlx): the foreign-key violation is read from
        // the database's error.
        let mut conn = TxConn::of(tx)?;
        let delete = conn.build(&users::Entity::delete_by_id(id.as_uuid()));
        let deleted = conn.try_execute(delete).await?.map_err(|e| {
            // Orders keep their buyer (order history is not deleted with an account).
            if is_foreign_key_violation(&e) {
                AppError::conflict(
                    inkcart_app::error::ErrorCode::UserHasOrders,
                    "User has orders and cannot be deleted",
                )
            } else {
                db_err(e)
            }
        })?;
        Ok(deleted == 1)
    }
}

fn session_from_model(m: refresh_tokens::Model) -> RefreshSession {
    RefreshSession {
        id: m.id.into(),
        user_id: UserId::from_uuid(m.user_id),
        family_id: SessionFamilyId::from_uuid(m.family_id),
        token_hash: m.token_hash,
        created_at: m.created_at,
        expires_at: m.expires_at,
        used_at: m.used_at,
        revoked_at: m.revoked_at,
    }
}

#[async_trait]
impl SessionRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, s: &RefreshSession) -> AppResult<()> {
        let model = refresh_tokens::ActiveModel {
            id: Set(s.id.into()),
            user_id: Set(s.user_id.as_uuid()),
            family_id: Set(s.family_id.as_uuid()),
            token_hash: Set(s.token_hash.clone()),
            created_at: Set(s.created_at),
            expires_at: Set(s.expires_at),
            used_at: Set(s.used_at),
            revoked_at: Set(s.revoked_at),
        };
        write(tx, &refresh_tokens::Entity::insert(model)).await?;
        Ok(())
    }

    async fn find_by_hash(&self, token_hash: &str) -> AppResult<Option<RefreshSession>> {
        Ok(refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
            .unique(&self.db.reader)
            .await
            .map_err(db_err)?
            .map(session_from_model))
    }

    async fn mark_used(
        &self,
        tx: &mut dyn Tx,
        id: RefreshTokenId,
        at: DateTime<Utc>,
    ) -> AppResult<bool> {
        let result = write(
            tx,
            &refresh_tokens::Entity::update_many()
                .col_expr(refresh_tokens::Column::UsedAt, Expr::value(at))
                .filter(refresh_tokens::Column::Id.eq(id.as_uuid()))
                .filter(refresh_tokens::Column::UsedAt.is_null())
                .filter(refresh_tokens::Column::RevokedAt.is_null()),
        )
        .await?;
        Ok(result == 1)
    }

    async fn revoke(
        &self,
        tx: &mut dyn Tx,
        id: RefreshTokenId,
        at: DateTime<Utc>,
    ) -> AppResult<()> {
        write(
            tx,
            &refresh_tokens::Entity::update_many()
                .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(at))
                .filter(refresh_tokens::Column::Id.eq(id.as_uuid()))
                .filter(refresh_tokens::Column::RevokedAt.is_null()),
        )
        .await?;
        Ok(())
    }

    async fn revoke_family(
        &self,
        tx: &mut dyn Tx,
        family: SessionFamilyId,
        at: DateTime<Utc>,
    ) -> AppResult<u64> {
        let result = write(
            tx,
            &refresh_tokens::Entity::update_many()
                .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(at))
                .filter(refresh_tokens::Column::FamilyId.eq(family.as_uuid()))
                .filter(refresh_tokens::Column::RevokedAt.is_null()),
        )
        .await?;
        Ok(result)
    }

    async fn revoke_all_for_user(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        at: DateTime<Utc>,
    ) -> AppResult<u64> {
        let result = write(
            tx,
            &refresh_tokens::Entity::update_many()
                .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(at))
                .filter(refresh_tokens::Column::UserId.eq(user.as_uuid()))
                .filter(refresh_tokens::Column::RevokedAt.is_null()),
        )
        .await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use inkcart_domain::UserId;
    use sea_orm::sea_query::Value;

    use super::user_by_id;
    use crate::repo::assert_kept_text_binds;

    #[test]
    fn an_account_read_after_the_first_binds_its_own_id_to_the_kept_statement() {
        assert_kept_text_binds(
            |id: &UserId, dialect| user_by_id(*id, dialect),
            |id| vec![Value::from(id.as_uuid())],
            &UserId::generate(),
            &UserId::generate(),
        );
    }
}
