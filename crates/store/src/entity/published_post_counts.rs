use sea_orm::entity::prelude::*;

/// The number of published posts overall, per author and per tag, kept by triggers (migration
/// `m20261203_000003`): read here, never written. A scope or key without a row counts zero.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "published_post_counts")]
pub struct Model {
    /// [`ALL`], [`AUTHOR`] or [`TAG`].
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// The author's or the tag's id; the nil id for [`ALL`].
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub n: i64,
}

/// Every published post (one row, under the nil id).
pub const ALL: &str = "all";
/// The published posts of one author (by user id).
pub const AUTHOR: &str = "author";
/// The published posts with one tag (by tag id).
pub const TAG: &str = "tag";

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
