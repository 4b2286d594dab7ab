//! What a GraphQL field may cost, for the complexity limit.
//!
//! A unit is about 100 bytes: of the JSON response, or of the rows read to answer. A field
//! costs 1, or the largest value it may hold (a text of at most `n` characters costs
//! `6n / 100`, six bytes being the longest JSON form of a character). A list costs 1 plus, for
//! each item of the largest page it may return, whichever is more of what the item reads from
//! the database and what is selected of it. A query's cost thus bounds both its response and
//! the rows read for it: with the default limit of 50,000 units, about 5 MB.
//!
//! The maxima come from the domain's limits, so that a change there changes the costs here.

use inkcart_app::page::{DEFAULT_LIMIT, MAX_LIMIT};
use inkcart_domain::blog::post::{
    COMMENT_MAX, CONTENT_HTML_MAX, CONTENT_MAX, TAG_MAX, TAGS_PER_POST, TITLE_MAX,
};

/// The longest JSON form of one character: a control character written `\u00XX`.
const BYTES_PER_CHAR: usize = 6;
const UNIT_BYTES: usize = 100;

/// The cost of a text of at most `max_chars` characters.
const fn text(max_chars: usize) -> usize {
    (max_chars * BYTES_PER_CHAR).div_ceil(UNIT_BYTES)
}

pub(crate) const TITLE: usize = text(TITLE_MAX);
pub(crate) const SLUG: usize = text(inkcart_domain::blog::slug::MAX_LEN);
/// An excerpt with the ellipsis of a cut.
pub(crate) const EXCERPT: usize = text(inkcart_app::blog::EXCERPT_LEN + 1);
pub(crate) const CONTENT: usize = text(CONTENT_MAX);
/// A post's HTML: content that renders to more than `CONTENT_HTML_MAX` bytes is refused when
/// it is written. In JSON a byte of HTML takes at most two (a quote or a backslash is escaped;
/// control characters never survive the sanitizer).
pub(crate) const CONTENT_HTML: usize = (2 * CONTENT_HTML_MAX).div_ceil(UNIT_BYTES);
/// A post's Markdown and HTML are read together, for either.
pub(crate) const CONTENT_PAIR: usize = CONTENT + CONTENT_HTML;
pub(crate) const TAG_NAME: usize = text(TAG_MAX);
pub(crate) const TAGS: usize = TAGS_PER_POST * TAG_NAME;
pub(crate) const COMMENT: usize = text(COMMENT_MAX);
pub(crate) const USER_NAME: usize = text(inkcart_domain::user::NAME_MAX_LEN);
pub(crate) const EMAIL: usize = text(inkcart_domain::email::MAX_LEN);
pub(crate) const PRODUCT_NAME: usize = text(inkcart_domain::shop::product::NAME_MAX);
pub(crate) const DESCRIPTION: usize = text(inkcart_domain::shop::product::DESCRIPTION_MAX);

/// What one item reads, whatever is selected of it (ids, numbers and dates: 1).
pub(crate) const USER_ROW: usize = 1 + EMAIL + USER_NAME;
/// A post as lists read it: with tags and author name, without content.
pub(crate) const POST_ROW: usize = 1 + TITLE + SLUG + EXCERPT + TAGS + USER_NAME;
/// A post read on its own: with its Markdown and HTML.
pub(crate) const POST_DETAIL_ROW: usize = POST_ROW + CONTENT_PAIR;
pub(crate) const COMMENT_ROW: usize = 1 + COMMENT + USER_NAME;
pub(crate) const TAG_ROW: usize = 1 + TAG_NAME;
pub(crate) const PRODUCT_ROW: usize = 1 + PRODUCT_NAME + DESCRIPTION;
/// An order is read with every line (at most the domain's maximum).
pub(crate) const ORDER_ROW: usize = 1 + inkcart_domain::shop::order::MAX_LINES * ORDER_ITEM_ROW;
pub(crate) const ORDER_ITEM_ROW: usize = 1 + PRODUCT_NAME;

/// The size of a page of a list: the default and the maximum of each list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paging {
    pub default: u64,
    pub max: u64,
}

/// Top-level lists: the REST defaults.
pub(crate) const TOP_LEVEL: Paging = Paging {
    default: DEFAULT_LIMIT,
    max: MAX_LIMIT,
};
/// `User.posts`.
pub(crate) const USER_POSTS: Paging = Paging {
    default: 10,
    max: 20,
};
/// `Post.comments`.
pub(crate) const POST_COMMENTS: Paging = Paging {
    default: 10,
    max: 50,
};
/// `tags`.
pub(crate) const TAG_LIST: Paging = Paging {
    default: 50,
    max: MAX_LIMIT,
};

impl Paging {
    /// The most items a list asked for with `limit` may return. A limit out of range is
    /// counted as the maximum: the resolver refuses it with a field error.
    pub(crate) fn items(self, limit: Option<u64>) -> usize {
        usize::try_from(limit.unwrap_or(self.default).clamp(1, self.max)).unwrap_or(usize::MAX)
    }
}

/// A list of at most `items` items, each reading `row` units, with `child` selected of each.
pub(crate) fn list(items: usize, row: usize, child: usize) -> usize {
    items.saturating_mul(row.max(child)).saturating_add(1)
}

/// One object reading `row` units.
pub(crate) fn object(row: usize, child: usize) -> usize {
    row.max(child).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_cost_their_longest_json_in_hundreds_of_bytes() {
        assert_eq!(text(100), 6);
        assert_eq!(CONTENT, 6_000);
        assert_eq!(COMMENT, 300);
        assert_eq!(TITLE, 12);
    }

    #[test]
    fn the_costs_the_configuration_page_lists_hold() {
        assert_eq!(
            (POST_ROW, COMMENT_ROW, PRODUCT_ROW, ORDER_ROW, CONTENT_PAIR),
            (68, 307, 613, 1_301, 18_000)
        );
    }

    #[test]
    fn a_list_costs_its_largest_page_of_whichever_is_more_of_row_and_selection() {
        assert_eq!(
            list(POST_COMMENTS.items(None), COMMENT_ROW, 2),
            1 + 10 * COMMENT_ROW
        );
        assert_eq!(list(POST_COMMENTS.items(Some(1_000)), 1, 7), 1 + 50 * 7);
        assert_eq!(list(usize::MAX, 2, 2), usize::MAX);
    }
}
