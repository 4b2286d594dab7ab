use chrono::{DateTime, Utc};
use thiserror::Error;

use super::Slug;
use crate::{Actor, PostId, Role, UserId};

/// A blog post. `content` is Markdown as written; `content_html` is its sanitized rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: PostId,
    pub author_id: UserId,
    pub title: String,
    pub slug: Slug,
    pub content: String,
    pub content_html: String,
    pub excerpt: String,
    pub cover_image_key: Option<String>,
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const TITLE_MAX: usize = 200;
pub const CONTENT_MAX: usize = 100_000;
/// How deep rendered content may nest: elements inside elements, Markdown's and raw HTML's.
pub const CONTENT_DEPTH_MAX: usize = 100;
/// The most bytes of HTML content may render to. Markdown renders to a few bytes a character,
/// but a table whose rows are much shorter than its header has every missing cell written out
/// (100 KB of such Markdown renders to 2.5 MB); what is stored and served stays bounded.
pub const CONTENT_HTML_MAX: usize = 600_000;
pub const COMMENT_MAX: usize = 5_000;
pub const TAG_MAX: usize = 50;
pub const TAGS_PER_POST: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BlogError {
    #[error("Title must not be empty")]
    EmptyTitle,
    #[error("Title must be at most 200 characters")]
    TitleTooLong,
    #[error("Content must not be empty")]
    EmptyContent,
    #[error("Content must be at most 100000 characters")]
    ContentTooLong,
    #[error("Content must not nest more than 100 levels deep (quotes, lists, emphasis, HTML)")]
    ContentTooDeep,
    #[error("Content must render to at most 600000 bytes of HTML")]
    ContentRendersTooLarge,
    #[error("Comment must not be empty")]
    EmptyComment,
    #[error("Comment must be at most 5000 characters")]
    CommentTooLong,
    #[error("Tag names must be 1 to 50 characters without control characters")]
    BadTag,
    #[error("A post has at most 10 tags")]
    TooManyTags,
}

/// A post title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostTitle(String);

impl PostTitle {
    pub fn parse(input: &str) -> Result<Self, BlogError> {
        let title = input.trim();
        if title.is_empty() {
            return Err(BlogError::EmptyTitle);
        }
        if title.chars().count() > TITLE_MAX {
            return Err(BlogError::TitleTooLong);
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Post content: not blank, at most 100,000 characters (kept as written).
pub fn check_content(input: &str) -> Result<(), BlogError> {
    if input.trim().is_empty() {
        return Err(BlogError::EmptyContent);
    }
    if input.chars().count() > CONTENT_MAX {
        return Err(BlogError::ContentTooLong);
    }
    Ok(())
}

/// Comment text: trimmed, 1 to 5,000 characters.
pub fn parse_comment(input: &str) -> Result<String, BlogError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(BlogError::EmptyComment);
    }
    if text.chars().count() > COMMENT_MAX {
        return Err(BlogError::CommentTooLong);
    }
    Ok(text.to_owned())
}

/// A tag name: trimmed, lower-cased, inner runs of whitespace made one space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagName(String);

impl TagName {
    pub fn parse(input: &str) -> Result<Self, BlogError> {
        let name = input
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if name.is_empty() || name.chars().count() > TAG_MAX || name.chars().any(char::is_control) {
            return Err(BlogError::BadTag);
        }
        Ok(Self(name))
    }

    /// Parses a post's tags: duplicates (after normalizing) count once, at most 10.
    pub fn parse_all<'a>(
        inputs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Self>, BlogError> {
        let mut tags: Vec<Self> = Vec::new();
        for input in inputs {
            let tag = Self::parse(input)?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if tags.len() > TAGS_PER_POST {
            return Err(BlogError::TooManyTags);
        }
        Ok(tags)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Published posts are public; drafts are seen by their author, editors and admins.
pub fn can_view_post(post: &Post, viewer: Option<Actor>) -> bool {
    post.published || viewer.is_some_and(|a| a.id == post.author_id || a.has_role(Role::Editor))
}

/// A post is changed or deleted by its author or an admin.
pub fn can_edit_post(post: &Post, actor: Actor) -> bool {
    actor.id == post.author_id || actor.is_admin()
}

/// A comment is deleted by whoever wrote it, the post's author, or an admin.
pub fn can_delete_comment(comment_author: UserId, post_author: UserId, actor: Actor) -> bool {
    actor.id == comment_author || actor.id == post_author || actor.is_admin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            id: UserId::generate(),
            role,
        }
    }

    fn post(author: UserId, published: bool) -> Post {
        Post {
            id: PostId::generate(),
            author_id: author,
            title: "T".to_owned(),
            slug: Slug::from_title("T"),
            content: "c".to_owned(),
            content_html: "<p>c</p>".to_owned(),
            excerpt: "c".to_owned(),
            cover_image_key: None,
            published,
            published_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn drafts_are_seen_by_their_author_editors_and_admins_only() {
        let author = actor(Role::Editor);
        let draft = post(author.id, false);
        assert!(can_view_post(&draft, Some(author)));
        assert!(can_view_post(&draft, Some(actor(Role::Editor))));
        assert!(can_view_post(&draft, Some(actor(Role::Admin))));
        assert!(!can_view_post(&draft, Some(actor(Role::Viewer))));
        assert!(!can_view_post(&draft, None));
        assert!(can_view_post(&post(author.id, true), None));
    }

    #[test]
    fn only_the_author_or_an_admin_edits_a_post() {
        let author = actor(Role::Editor);
        let p = post(author.id, true);
        assert!(can_edit_post(&p, author));
        assert!(can_edit_post(&p, actor(Role::Admin)));
        assert!(!can_edit_post(&p, actor(Role::Editor)));
    }

    #[test]
    fn comments_are_deleted_by_their_writer_the_posts_author_or_an_admin() {
        let (writer, post_author) = (actor(Role::Viewer), actor(Role::Editor));
        assert!(can_delete_comment(writer.id, post_author.id, writer));
        assert!(can_delete_comment(writer.id, post_author.id, post_author));
        assert!(can_delete_comment(
            writer.id,
            post_author.id,
            actor(Role::Admin)
        ));
        assert!(!can_delete_comment(
            writer.id,
            post_author.id,
            actor(Role::Editor)
        ));
    }

    #[test]
    fn tag_names_are_normalized_and_deduplicated() {
        let tags = TagName::parse_all(["  Rust ", "rust", "Web   Dev"]).unwrap();
        let names: Vec<&str> = tags.iter().map(TagName::as_str).collect();
        assert_eq!(names, ["rust", "web dev"]);
        assert_eq!(TagName::parse(" "), Err(BlogError::BadTag));
        let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert_eq!(
            TagName::parse_all(many.iter().map(String::as_str)),
            Err(BlogError::TooManyTags)
        );
    }

    #[test]
    fn titles_and_comments_are_trimmed_and_bounded() {
        assert_eq!(PostTitle::parse("  Hi ").unwrap().as_str(), "Hi");
        assert_eq!(PostTitle::parse(""), Err(BlogError::EmptyTitle));
        assert_eq!(
            PostTitle::parse(&"x".repeat(201)),
            Err(BlogError::TitleTooLong)
        );
        assert_eq!(check_content("  \n "), Err(BlogError::EmptyContent));
        assert_eq!(parse_comment("  nice  ").unwrap(), "nice");
        assert_eq!(parse_comment(" "), Err(BlogError::EmptyComment));
    }
}
