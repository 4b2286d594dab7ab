//! Every difference between the SQL the store runs on SQLite and on PostgreSQL, in one place:
//! the repositories and the bulk loader ask the [`Dialect`] of their connection for the piece
//! that differs (a sort expression, the full-text search, the job claim, a placeholder, the step
//! after a bulk load) and hold no engine branch of their own.
//!
//! Two things stay where they are, engine-specific by nature: the migrations (each writes its
//! own DDL per engine, run through `migration::execute_on`), and the opening of a connection in
//! `connect.rs` (SQLite's pragmas and single writer, PostgreSQL's pool without JIT), which is the
//! connection's business, not the SQL's.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Query, SelectStatement, SimpleExpr};
use sea_orm::{ConnectionTrait, DbBackend, Order, Statement, StatementBuilder, Value};

/// What joins the tag names of [`Dialect::tag_list_of_post`]: U+001F, the unit separator.
pub(crate) const TAG_SEPARATOR: char = '\u{1f}';

/// The engine a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl From<DbBackend> for Dialect {
    /// The store opens SQLite and PostgreSQL only (see `connect.rs`).
    fn from(backend: DbBackend) -> Self {
        match backend {
            DbBackend::Postgres => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// What a select of posts is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Rows of a page: with authors and, for a search, ranks. `ranks` (limit, offset): a search
    /// takes its page of ranks inside the full-text index; the select then holds that page
    /// only.
    Page { ranks: Option<(u64, u64)> },
    /// Only their number.
    Count,
}

impl Dialect {
    /// The dialect of the engine behind a connection or transaction.
    pub(crate) fn of(conn: &impl ConnectionTrait) -> Self {
        conn.get_database_backend().into()
    }

    pub(crate) fn backend(self) -> DbBackend {
        match self {
            Self::Sqlite => DbBackend::Sqlite,
            Self::Postgres => DbBackend::Postgres,
        }
    }

    /// A built statement (select, insert, update, delete) in this dialect.
    pub(crate) fn build<S: StatementBuilder>(self, statement: &S) -> Statement {
        self.backend().build(statement)
    }

    /// Raw SQL with its values, for SQL written with [`Dialect::param`].
    pub(crate) fn statement(
        self,
        sql: impl Into<String>,
        values: impl IntoIterator<Item = Value>,
    ) -> Statement {
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// The placeholder of the `n`th value (from 1) of raw SQL: `$n`, or `?` (SQLite numbers its
    /// placeholders in the order they appear).
    pub(crate) fn param(self, n: usize) -> String {
        match self {
            Self::Postgres => format!("${n}"),
            Self::Sqlite => "?".to_owned(),
        }
    }

    // ---- Blog ----

    /// The title as sorted: byte order on both databases (PostgreSQL's locale collation would
    /// order punctuation and case differently from SQLite).
    pub(crate) fn title_sort(self) -> SimpleExpr {
        match self {
            Self::Postgres => Expr::cust(r#""posts"."title" COLLATE "C""#),
            Self::Sqlite => Expr::cust(r#""posts"."title""#),
        }
    }

    /// The names of a post's tags as one text joined by [`TAG_SEPARATOR`] (NULL for none): read
    /// with the post, so that a post costs one statement. Tag names cannot hold control
    /// characters (the domain refuses them), so the separator cannot be in one. In name order
    /// where [`Dialect::orders_tag_lists`] says so; otherwise the reader sorts them.
    pub(crate) fn tag_list_of_post(self) -> SimpleExpr {
        let aggregate = match self {
            Self::Postgres => r#"string_agg("tags"."name", chr(31) ORDER BY "tags"."name")"#,
            Self::Sqlite => r#"group_concat("tags"."name", char(31))"#,
        };
        Expr::cust(format!(
            r#"(SELECT {aggregate} FROM "post_tags" JOIN "tags" ON "tags"."id" = "post_tags"."tag_id" WHERE "post_tags"."post_id" = "posts"."id")"#
        ))
    }

    /// Whether [`Dialect::tag_list_of_post`] lists the names in order. On SQLite an aggregate's
    /// `ORDER BY` builds and drops a sorter for every post read (without it a post by slug
    /// answered 12 % more requests, docs/benchmarks-history.md, section 30), and its order
    /// (the `BINARY` collation) is the byte order a Rust sort gives, so the reader sorts the few
    /// names instead. PostgreSQL sorts in its own collation, as the tags of a list are sorted
    /// there.
    pub(crate) fn orders_tag_lists(self) -> bool {
        self == Self::Postgres
    }

    /// Whether an order's lines take their stock in one statement (`stock_update` in
    /// `repo/shop.rs`, which `RETURNING`s the rows it took), or in one statement per line that
    /// each say by their count of changed rows whether they took it. On PostgreSQL each statement
    /// is a round trip inside the transaction that holds the rows. On SQLite a statement is a
    /// call on the writer's thread, and the one statement's `IN` list, subquery and `RETURNING`
    /// each build and drop a temporary table on every order, where a statement per line is a
    /// search by key and nothing else (+2.8 % orders, docs/benchmarks-history.md, section 30).
    pub(crate) fn takes_stock_in_one_statement(self) -> bool {
        self == Self::Postgres
    }

    /// The order of a search's `rank` that puts the best match first: FTS5's `bm25()` is lower
    /// for a better match, PostgreSQL's `ts_rank` higher.
    pub(crate) fn best_rank_first(self) -> Order {
        match self {
            Self::Postgres => Order::Desc,
            Self::Sqlite => Order::Asc,
        }
    }

    /// Whether a page of ranks also carries the number of all matches (`n`), counted in the pass
    /// that ranks them: on PostgreSQL, where counting is a second visit to each match's row of
    /// `published_search` (10 to 20 % of a search's time, docs/benchmarks-history.md, section
    /// 13). On SQLite FTS5 counts from its index alone, and a window over the ranks cost more
    /// than it saved.
    pub(crate) fn counts_with_ranks(self) -> bool {
        self == Self::Postgres
    }

    /// The number of published posts that match, counted inside the full-text index.
    pub(crate) fn count_matches(self, terms: &[String]) -> SelectStatement {
        let mut count = Query::select();
        count.expr_as(Expr::cust("COUNT(*)"), "n");
        match self {
            Self::Postgres => count
                .from(Alias::new("published_search"))
                .and_where(ts_match(terms)),
            Self::Sqlite => count
                .from(Alias::new("posts_fts"))
                .and_where(fts_match(terms)),
        };
        count
    }

    /// The published posts that match a search, as `matches` rows: `sid` (the post's id) and,
    /// for a page, `rank` (best first in [`Dialect::best_rank_first`]). With `ranks`, only that
    /// page of ranks, cut inside the index (equal ranks newest first), on PostgreSQL each row
    /// with `n`, the number of all matches (see [`Dialect::counts_with_ranks`]).
    pub(crate) fn search_matches(self, terms: &[String], shape: Shape) -> SelectStatement {
        match self {
            Self::Postgres => ts_matches(terms, shape),
            Self::Sqlite => fts_matches(terms, shape),
        }
    }

    // ---- Shop ----

    /// The UTC day (`YYYY-MM-DD`) of a timestamp column, as text.
    pub(crate) fn utc_day(self, column: &str) -> String {
        match self {
            Self::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
            Self::Sqlite => format!("strftime('%Y-%m-%d', {column})"),
        }
    }

    // ---- Jobs ----

    /// Claims up to `limit` jobs for `worker` until `until`, returning their rows: due jobs,
    /// and jobs whose worker's lease ran out (it died or hangs). On PostgreSQL `SKIP LOCKED`
    /// lets workers claim side by side; SQLite has one writer at a time.
    pub(crate) fn claim_jobs(
        self,
        worker: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Statement {
        let (sql, values): (&str, Vec<Value>) = match self {
            Self::Postgres => (
                "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, \
                   attempts = attempts + 1, updated_at = $3 \
                 WHERE id IN (SELECT id FROM jobs \
                   WHERE (state IN ('queued', 'failed') AND run_at <= $3) \
                      OR (state = 'running' AND locked_until < $3) \
                   ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING *",
                vec![worker.into(), until.into(), now.into(), limit.into()],
            ),
            Self::Sqlite => (
                "UPDATE jobs SET state = 'running', locked_by = ?, locked_until = ?, \
                   attempts = attempts + 1, updated_at = ? \
                 WHERE id IN (SELECT id FROM jobs \
                   WHERE (state IN ('queued', 'failed') AND run_at <= ?) \
                      OR (state = 'running' AND locked_until < ?) \
                   ORDER BY run_at, id LIMIT ?) \
                 RETURNING *",
                vec![
                    worker.into(),
                    until.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                    limit.into(),
                ],
            ),
        };
        self.statement(sql, values)
    }

    // ---- Bulk loads ----

    /// What to run once a bulk load is written. On PostgreSQL, `VACUUM (ANALYZE)`: it tells the
    /// planner what the tables now hold and marks their pages all-visible (for index-only
    /// scans). Without statistics it guessed that 20 posts have 200,000 tags and comments and
    /// planned parallel scans (30 ms where an index lookup takes 1 ms); autovacuum gets there
    /// in its own time, or never where it is off. SQLite's plans do not depend on statistics.
    pub(crate) fn after_bulk_load(self) -> Option<&'static str> {
        match self {
            Self::Postgres => Some("VACUUM (ANALYZE)"),
            Self::Sqlite => None,
        }
    }
}

// ---- Full-text search on SQLite: FTS5 over published posts (`posts_fts`, `posts_search`) ----

/// An FTS5 query: every term quoted (they are letters and digits only), all required.
fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `posts_fts MATCH ?` for the terms.
fn fts_match(terms: &[String]) -> SimpleExpr {
    Expr::cust_with_values("posts_fts MATCH ?", [fts5_query(terms)])
}

fn fts_matches(terms: &[String], shape: Shape) -> SelectStatement {
    let mut matches = Query::select();
    matches.expr_as(Expr::cust(r#""posts_search"."post_id""#), "sid");
    match shape {
        Shape::Page {
            ranks: Some((limit, offset)),
        } => {
            // The page of ranks, cut inside the index; equal ranks newest first (the index's
            // rowids grow as posts are written).
            let mut ranked = Query::select();
            ranked
                .expr_as(Expr::cust(r#""posts_fts"."rowid""#), "rid")
                .expr_as(Expr::cust("bm25(posts_fts, 10.0, 1.0)"), "score")
                .from(Alias::new("posts_fts"))
                .and_where(fts_match(terms))
                .order_by(Alias::new("score"), Order::Asc)
                .order_by(Alias::new("rid"), Order::Desc)
                // Bound, unlike `paged`'s literals (this is a subquery): the re-prepare it
                // costs SQLite is small next to the ranking.
                .limit(limit)
                .offset(offset);
            matches
                .expr_as(Expr::cust(r#""ranked"."score""#), "rank")
                .from_subquery(ranked, Alias::new("ranked"))
                .inner_join(
                    Alias::new("posts_search"),
                    Expr::cust(r#""posts_search"."rowid" = "ranked"."rid""#),
                );
        }
        _ => {
            if shape != Shape::Count {
                matches.expr_as(Expr::cust("bm25(posts_fts, 10.0, 1.0)"), "rank");
            }
            matches
                .from(Alias::new("posts_fts"))
                .inner_join(
                    Alias::new("posts_search"),
                    Expr::cust(r#""posts_search"."rowid" = "posts_fts"."rowid""#),
                )
                .and_where(fts_match(terms));
        }
    }
    matches
}

// ---- Full-text search on PostgreSQL: a tsvector of each published post (`published_search`) ----

/// The PostgreSQL query of the terms: every term required, English stemming and stop words.
fn ts_query(sql: &'static str, terms: &[String]) -> SimpleExpr {
    Expr::cust_with_values(sql, [terms.join(" ")])
}

/// `search_vector @@ <terms>` on `published_search`.
fn ts_match(terms: &[String]) -> SimpleExpr {
    ts_query(
        r#""published_search"."search_vector" @@ plainto_tsquery('english', $1)"#,
        terms,
    )
}

/// A match's rank on PostgreSQL, higher first: `ts_rank` weighs how often the terms occur, a
/// title's (weight A) above the content's (B), as `bm25()` does on SQLite.
fn ts_rank(terms: &[String]) -> SimpleExpr {
    ts_query(
        r#"ts_rank("published_search"."search_vector", plainto_tsquery('english', $1))"#,
        terms,
    )
}

fn ts_matches(terms: &[String], shape: Shape) -> SelectStatement {
    let mut matches = Query::select();
    let Shape::Page {
        ranks: Some((limit, offset)),
    } = shape
    else {
        matches
            .expr_as(Expr::cust(r#""published_search"."post_id""#), "sid")
            .from(Alias::new("published_search"))
            .and_where(ts_match(terms));
        if shape != Shape::Count {
            matches.expr_as(ts_rank(terms), "rank");
        }
        return matches;
    };
    // Every match ranked, then counted by a window and cut to the page. The `OFFSET 0` keeps
    // the ranking in a select of its own: merged into the window's, the window stored each
    // match's whole vector instead of its rank (spilling to disk for a word in a few thousand
    // posts, and slower than counting apart).
    let mut scored = Query::select();
    scored
        .expr_as(Expr::cust(r#""published_search"."post_id""#), "sid")
        .expr_as(
            Expr::cust(r#""published_search"."created_at""#),
            "created_at",
        )
        .expr_as(ts_rank(terms), "rank")
        .from(Alias::new("published_search"))
        .and_where(ts_match(terms))
        .offset(0);
    matches
        .column(Alias::new("sid"))
        .column(Alias::new("rank"))
        .expr_as(Expr::cust("COUNT(*) OVER ()"), "n")
        .from_subquery(scored, Alias::new("scored"))
        .order_by(Alias::new("rank"), Order::Desc)
        .order_by(Alias::new("created_at"), Order::Desc)
        .order_by(Alias::new("sid"), Order::Desc)
        .limit(limit)
        .offset(offset);
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_postgres_and_positional_on_sqlite() {
        assert_eq!(Dialect::Postgres.param(2), "$2");
        assert_eq!(Dialect::Sqlite.param(2), "?");
    }

    #[test]
    fn a_dialect_comes_from_its_backend() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            assert_eq!(Dialect::from(dialect.backend()), dialect);
        }
    }
}
