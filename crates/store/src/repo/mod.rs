use std::any::Any;
use std::convert::Infallible;
use std::sync::OnceLock;

use async_trait::async_trait;
use inkcart_app::page::Direction;
use inkcart_app::ports::{Store, Tx, TxWork, transact_after_begin};
use inkcart_app::{AppError, AppResult};
use sea_orm::sea_query::{
    Expr, InsertStatement, IntoIden, IntoTableRef, Query, SelectStatement, Value,
};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, Order, QueryTrait, Select, Statement,
    TransactionTrait as _,
};

use crate::Db;
use crate::dialect::Dialect;
use crate::error::db_err;
use crate::lite::{Column, Columns, LiteTx, Row};
use crate::pg::PgTx;

mod blog;
mod identity;
mod jobs;
mod shop;

/// The repositories of every feature over one [`Db`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Db,
}

impl SqlStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The dialect of the database, which builds the statements it runs.
    fn dialect(&self) -> Dialect {
        Dialect::of(&self.db.reader)
    }

    /// Every row of a built select that an index bounds, decoded (see [`SqlStore::read`]).
    async fn read_all<T>(
        &self,
        select: &SelectStatement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T> + Send,
    ) -> AppResult<Vec<T>> {
        self.read(self.dialect().build(select), decode).await
    }

    /// Every row of a built statement that an index bounds (a lookup by key, a page, a kept
    /// count), each decoded by `decode`. On a SQLite file it runs on the calling thread
    /// (`lite/mod.rs`: no hand-off to a connection thread); elsewhere as
    /// [`SqlStore::read_offloaded`].
    async fn read<T>(
        &self,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T> + Send,
    ) -> AppResult<Vec<T>> {
        match &self.db.lite {
            Some(lite) => lite.read(&statement, decode),
            None => self.read_offloaded(statement, decode).await,
        }
    }

    /// The rows of whole entities a select finds, each decoded by `decode`, through
    /// [`SqlStore::read`]: for lookups by key.
    async fn models<E: EntityTrait, M>(
        &self,
        select: Select<E>,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<M> + Send,
    ) -> AppResult<Vec<M>> {
        self.read_all(&select.into_query(), decode).await
    }

    /// Every row of a statement that may take long (a full-text search, a count of every row
    /// a filter selects, a batch), decoded, never holding a runtime thread: on a SQLite file on
    /// one of the runtime's blocking threads (`lite/mod.rs`), on an in-memory SQLite database
    /// through the reading pool on the driver's own connection thread; on PostgreSQL on the
    /// connections the store keeps out of the pool (`pg.rs`).
    async fn read_offloaded<T>(
        &self,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T> + Send,
    ) -> AppResult<Vec<T>> {
        if let Some(pg) = &self.db.pg {
            return pg.read(statement, decode).await;
        }
        if let Some(lite) = &self.db.lite {
            return lite.read_blocking(statement, decode).await;
        }
        let rows = self
            .db
            .reader
            .query_all_raw(statement)
            .await
            .map_err(db_err)?;
        rows.iter().map(|row| decode(&Row::Sea(row))).collect()
    }
}

/// The row a lookup by a unique key finds.
///
/// Not sea-orm's `one()`: that appends `LIMIT ?`, and SQLite re-prepares (parses and plans
/// again) a statement whose LIMIT is a bound parameter every time it runs with new bindings,
/// because its planner reads the bound value. That was 6 % of the CPU of placing an order. A
/// lookup by a unique key finds at most one row without a limit.
pub(crate) trait Unique<E: EntityTrait> {
    async fn unique<C: ConnectionTrait>(self, conn: &C) -> Result<Option<E::Model>, DbErr>;
}

impl<E: EntityTrait> Unique<E> for Select<E> {
    async fn unique<C: ConnectionTrait>(self, conn: &C) -> Result<Option<E::Model>, DbErr> {
        Ok(self.all(conn).await?.into_iter().next())
    }
}

/// One column of a raw query's row, by name; a missing or mistyped column is an internal error.
pub(crate) fn get<T: Column>(row: &impl Columns, column: &str) -> AppResult<T> {
    row.column(column)
}

/// A UUID column as the typed id of its entity (`PostId`, `OrderId`, …).
pub(crate) fn get_id<T: From<uuid::Uuid>>(row: &impl Columns, column: &str) -> AppResult<T> {
    get::<uuid::Uuid>(row, column).map(T::from)
}

/// The UUIDs of typed ids, for SQL parameters.
pub(crate) fn uuids<T: Copy + Into<uuid::Uuid>>(ids: &[T]) -> Vec<uuid::Uuid> {
    ids.iter().map(|&id| id.into()).collect()
}

/// The text of a statement whose shape never changes, only its values: built with sea-query
/// once per dialect, then reused with each call's values.
///
/// Building a select (its expression tree, then its text) on every call was a tenth of the CPU
/// of an uncached post read on SQLite, where the read itself runs on the calling thread. Both
/// databases cache prepared statements by their text, so the text is all that is kept.
pub(crate) struct OnceSql {
    texts: [OnceLock<String>; 2],
}

impl OnceSql {
    pub(crate) const fn new() -> Self {
        Self {
            texts: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The kept text with `values` bound in their order. The first call in a dialect runs
    /// `build`, which must make the statement with those same values; its text is kept.
    pub(crate) fn statement(
        &self,
        dialect: Dialect,
        values: Vec<Value>,
        build: impl FnOnce() -> Statement,
    ) -> Statement {
        self.try_statement(dialect, values, || Ok::<_, Infallible>(build()))
            .unwrap_or_else(|never| match never {})
    }

    /// [`OnceSql::statement`] for a `build` that can fail (its error is returned, nothing kept).
    pub(crate) fn try_statement<E>(
        &self,
        dialect: Dialect,
        values: Vec<Value>,
        build: impl FnOnce() -> Result<Statement, E>,
    ) -> Result<Statement, E> {
        let slot = &self.texts[match dialect {
            Dialect::Sqlite => 0,
            Dialect::Postgres => 1,
        }];
        if let Some(text) = slot.get() {
            return Ok(Statement::from_sql_and_values(
                dialect.backend(),
                text.as_str(),
                values,
            ));
        }
        let built = build()?;
        // Another thread may have kept the same text first.
        let _ = slot.set(built.sql.clone());
        Ok(built)
    }
}

/// [`OnceSql`] for statements whose text depends on how many items they name (`IN (?, ?, ?)`):
/// one kept text per count up to `N`, a statement built each time above that.
pub(crate) struct OnceSqlPerCount<const N: usize>([OnceSql; N]);

impl<const N: usize> OnceSqlPerCount<N> {
    pub(crate) const fn new() -> Self {
        Self([const { OnceSql::new() }; N])
    }

    /// [`OnceSql::statement`] for `count` items.
    pub(crate) fn statement(
        &self,
        dialect: Dialect,
        count: usize,
        values: Vec<Value>,
        build: impl FnOnce() -> Statement,
    ) -> Statement {
        self.try_statement(dialect, count, values, || Ok::<_, Infallible>(build()))
            .unwrap_or_else(|never| match never {})
    }

    /// [`OnceSql::try_statement`] for `count` items.
    pub(crate) fn try_statement<E>(
        &self,
        dialect: Dialect,
        count: usize,
        values: Vec<Value>,
        build: impl FnOnce() -> Result<Statement, E>,
    ) -> Result<Statement, E> {
        match count.checked_sub(1).and_then(|i| self.0.get(i)) {
            Some(kept) => kept.try_statement(dialect, values, build),
            None => build(),
        }
    }
}

/// One row of an insert as `(column, value)` pairs: the one list from which both the insert
/// ([`insert_rows`]) and the values bound to its kept text ([`row_values`]) are made, so that
/// the two cannot name their columns in different orders.
pub(crate) type InsertRow<C, const N: usize> = [(C, Value); N];

/// An insert of `rows` (at least one) into `table`, in the columns of the rows' pairs. `expr`
/// makes each value's expression: [`Expr::value`], or something else in its place (a subquery).
pub(crate) fn insert_rows<C: IntoIden + Copy, const N: usize>(
    table: impl IntoTableRef,
    rows: impl IntoIterator<Item = InsertRow<C, N>>,
    expr: impl Fn(C, Value) -> Expr,
) -> AppResult<InsertStatement> {
    let mut insert = Query::insert();
    insert.into_table(table);
    let mut rows = rows.into_iter().peekable();
    let columns = rows
        .peek()
        .ok_or_else(|| AppError::internal("an insert of no rows"))?
        .each_ref()
        .map(|(column, _)| *column);
    insert.columns(columns);
    for row in rows {
        insert
            .values(row.map(|(column, value)| expr(column, value)))
            .map_err(AppError::internal)?;
    }
    Ok(insert)
}

/// The values of [`insert_rows`] for the same rows (each value as [`Expr::value`]), in the
/// order of its text.
pub(crate) fn row_values<C, const N: usize>(
    rows: impl IntoIterator<Item = InsertRow<C, N>>,
) -> Vec<Value> {
    rows.into_iter()
        .flat_map(|row| row.map(|(_, value)| value))
        .collect()
}

/// Checks a kept statement text against sea-query: the statement built for `second`, and the
/// text kept from `first` with the values the caller gives for `second`, must be the same.
#[cfg(test)]
#[expect(
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]
pub(crate) fn assert_kept_text_binds<T>(
    build: impl Fn(&T, Dialect) -> Statement,
    values: impl Fn(&T) -> Vec<Value>,
    first: &T,
    second: &T,
) {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let kept = OnceSql::new();
        let one = kept.statement(dialect, values(first), || build(first, dialect));
        assert_eq!(one, build(first, dialect), "{dialect:?}");
        let two = kept.statement(dialect, values(second), || panic!("built again"));
        assert_eq!(two, build(second, dialect), "{dialect:?}");
    }
}

/// A built select with its LIMIT and OFFSET written into the SQL as integer literals.
///
/// For the same reason as [`Unique`]: a bound LIMIT makes SQLite prepare the statement again on
/// every run. Integers cannot change the statement's shape, and the SQL of a page differs only
/// by its size and offset, so the prepared statement cache keeps one per page size (and one per
/// offset actually asked for). The statement must not carry a LIMIT of its own.
pub(crate) fn paged(mut statement: Statement, limit: u64, offset: u64) -> Statement {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(statement.sql, " LIMIT {limit}");
    if offset > 0 {
        let _ = write!(statement.sql, " OFFSET {offset}");
    }
    statement
}

/// A transaction on the writer connection.
struct SeaTx(DatabaseTransaction);

#[async_trait]
impl Tx for SeaTx {
    fn as_any(&mut self) -> &mut (dyn Any + Send) {
        self
    }

    async fn commit(self: Box<Self>) -> AppResult<()> {
        self.0.commit().await.map_err(db_err)
    }
}

/// Runs a sea-orm insert, update or delete in `tx`; how many rows it changed.
pub(crate) async fn write(tx: &mut dyn Tx, query: &(impl QueryTrait + Sync)) -> AppResult<u64> {
    let mut conn = TxConn::of(tx)?;
    let statement = conn.build(query);
    conn.execute(statement).await
}

/// The connection a transaction's statements run on: on PostgreSQL one of those the store keeps
/// (`pg.rs`); on SQLite (and PostgreSQL with a pool of one) sea-orm's (sqlx) or, for work given
/// to `Store::transact` on a SQLite file, the writer thread's own (`lite/writer.rs`).
pub(crate) enum TxConn<'a> {
    Sea(&'a DatabaseTransaction),
    Lite(&'a mut LiteTx),
    Pg(&'a mut PgTx),
}

impl<'a> TxConn<'a> {
    pub(crate) fn of(tx: &'a mut dyn Tx) -> AppResult<Self> {
        let any = tx.as_any();
        if any.is::<LiteTx>() {
            return any
                .downcast_mut::<LiteTx>()
                .map(TxConn::Lite)
                .ok_or_else(|| AppError::internal("unreachable: checked type"));
        }
        if any.is::<PgTx>() {
            return any
                .downcast_mut::<PgTx>()
                .map(TxConn::Pg)
                .ok_or_else(|| AppError::internal("unreachable: checked type"));
        }
        any.downcast_ref::<SeaTx>()
            .map(|t| TxConn::Sea(&t.0))
            .ok_or_else(|| AppError::internal("a transaction from another store was passed in"))
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Sea(conn) => Dialect::of(*conn),
            Self::Lite(_) => Dialect::Sqlite,
            Self::Pg(_) => Dialect::Postgres,
        }
    }

    /// A sea-orm insert, update or delete, built for this connection's database.
    pub(crate) fn build(&self, query: &impl QueryTrait) -> Statement {
        query.build(self.dialect().backend())
    }

    /// Runs a statement without rows; how many rows it changed.
    pub(crate) async fn execute(&mut self, statement: Statement) -> AppResult<u64> {
        match self {
            Self::Lite(tx) => tx.execute(&statement),
            Self::Sea(_) | Self::Pg(_) => self.try_execute(statement).await?.map_err(db_err),
        }
    }

    /// Runs a statement without rows through sqlx; how many rows it changed, or the database's
    /// own error (for a caller that reads a constraint from it). Not on the SQLite writer thread.
    pub(crate) async fn try_execute(
        &mut self,
        statement: Statement,
    ) -> AppResult<Result<u64, DbErr>> {
        match self {
            Self::Sea(conn) => Ok(conn
                .execute_raw(statement)
                .await
                .map(|done| done.rows_affected())),
            Self::Pg(tx) => tx.try_execute(statement).await,
            Self::Lite(_) => Err(AppError::internal(
                "this statement runs on a transaction from `begin`",
            )),
        }
    }

    /// Every row of a statement (a read, or a write with `RETURNING`), each decoded.
    pub(crate) async fn query<T>(
        &mut self,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T> + Send,
    ) -> AppResult<Vec<T>> {
        match self {
            Self::Sea(conn) => {
                let rows = conn.query_all_raw(statement).await.map_err(db_err)?;
                rows.iter().map(|row| decode(&Row::Sea(row))).collect()
            }
            Self::Lite(tx) => tx.query(&statement, decode),
            Self::Pg(tx) => tx.query(statement, decode).await,
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn begin(&self) -> AppResult<Box<dyn Tx>> {
        if let Some(pg) = &self.db.pg {
            return Ok(Box::new(pg.begin().await?));
        }
        let tx = self.db.writer.begin().await.map_err(db_err)?;
        Ok(Box::new(SeaTx(tx)))
    }

    async fn transact(&self, work: TxWork) -> AppResult<Box<dyn Any + Send>> {
        if let Some(writer) = &self.db.lite_writer {
            return writer.transact(work).await;
        }
        transact_after_begin(self, work).await
    }

    async fn check_ready(&self) -> Result<(), String> {
        if let Err(err) = self.db.reader.execute_unprepared("SELECT 1").await {
            tracing::error!(error = %err, "readiness: database does not answer");
            return Err("unreachable".to_owned());
        }
        match self.db.pending_migrations().await {
            Ok(pending) if pending.is_empty() => Ok(()),
            Ok(pending) => {
                tracing::warn!(?pending, "readiness: migrations pending");
                Err("migrations pending".to_owned())
            }
            Err(err) => {
                tracing::error!(error = %err, "readiness: cannot read migration state");
                Err("migrations unknown".to_owned())
            }
        }
    }
}

pub(crate) fn escape_like(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub(crate) fn order(direction: Direction) -> Order {
    match direction {
        Direction::Asc => Order::Asc,
        Direction::Desc => Order::Desc,
    }
}
