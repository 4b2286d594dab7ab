//! The blog: posts with slugs and tags, comments, and who may see and change them.

pub mod post;
pub mod slug;

pub use post::{
    BlogError, Post, PostTitle, TagName, can_delete_comment, can_edit_post, can_view_post,
};
pub use slug::Slug;
