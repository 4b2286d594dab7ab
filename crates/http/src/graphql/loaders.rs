//! Batch loaders: every key asked for in one step of a query is fetched in one statement.

use std::collections::HashMap;

use inkcart_app::page::PageRequest;
use inkcart_app::ports::{CommentView, PostSummary};
use inkcart_app::{Blog, Identity};
use inkcart_domain::PostId;
use inkcart_domain::{User, UserId};

use super::gql_error;

async fn users(
    identity: &Identity,
    keys: &[UserId],
) -> Result<HashMap<UserId, User>, async_graphql::Error> {
    let users = identity.users_by_ids(keys).await.map_err(gql_error)?;
    Ok(users.into_iter().map(|u| (u.id, u)).collect())
}

/// Users by id (posts' authors, and users reached from them).
pub struct Users(pub Identity);

impl async_graphql::dataloader::Loader<UserId> for Users {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, User>, Self::Error> {
        users(&self.0, keys).await
    }
}

/// Comments' authors. A loader of its own: sharing `Users` would let comment authors join the
/// post authors' batch or not depending on timing, and the statement count would vary.
pub struct CommentAuthors(pub Identity);

impl async_graphql::dataloader::Loader<UserId> for CommentAuthors {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, User>, Self::Error> {
        users(&self.0, keys).await
    }
}

/// Groups keys by page: one statement per page asked for (a query asks for few).
fn by_page<K: Copy>(keys: &[(K, PageRequest)]) -> HashMap<PageRequest, Vec<K>> {
    let mut pages: HashMap<PageRequest, Vec<K>> = HashMap::new();
    for (key, page) in keys {
        pages.entry(*page).or_default().push(*key);
    }
    pages
}

/// A page of each author's published posts, newest first.
pub struct PostsByAuthor(pub Blog);

impl async_graphql::dataloader::Loader<(UserId, PageRequest)> for PostsByAuthor {
    type Value = Vec<PostSummary>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[(UserId, PageRequest)],
    ) -> Result<HashMap<(UserId, PageRequest), Vec<PostSummary>>, Self::Error> {
        let mut map: HashMap<(UserId, PageRequest), Vec<PostSummary>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for (page, authors) in by_page(keys) {
            let posts = self
                .0
                .posts_by_authors(&authors, page)
                .await
                .map_err(gql_error)?;
            for post in posts {
                map.entry((post.author.id, page)).or_default().push(post);
            }
        }
        Ok(map)
    }
}

/// A page of each post's comments, oldest first.
pub struct CommentsByPost(pub Blog);

impl CommentsByPost {
    /// The comments of `posts`, a page of each, by post and page.
    pub(crate) async fn pages(
        blog: &Blog,
        posts: &[PostId],
        page: PageRequest,
    ) -> Result<HashMap<(PostId, PageRequest), Vec<CommentView>>, async_graphql::Error> {
        let comments = blog
            .comments_for_posts(posts, page)
            .await
            .map_err(gql_error)?;
        let mut map: HashMap<(PostId, PageRequest), Vec<CommentView>> =
            posts.iter().map(|id| ((*id, page), Vec::new())).collect();
        for comment in comments {
            map.entry((comment.comment.post_id, page))
                .or_default()
                .push(comment);
        }
        Ok(map)
    }
}

impl async_graphql::dataloader::Loader<(PostId, PageRequest)> for CommentsByPost {
    type Value = Vec<CommentView>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[(PostId, PageRequest)],
    ) -> Result<HashMap<(PostId, PageRequest), Vec<CommentView>>, Self::Error> {
        let mut map = HashMap::new();
        for (page, posts) in by_page(keys) {
            map.extend(Self::pages(&self.0, &posts, page).await?);
        }
        Ok(map)
    }
}

/// A post's Markdown and HTML (lists leave them out).
pub struct PostContents(pub Blog);

impl async_graphql::dataloader::Loader<PostId> for PostContents {
    type Value = (String, String);
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[PostId],
    ) -> Result<HashMap<PostId, (String, String)>, Self::Error> {
        self.0.post_contents(keys).await.map_err(gql_error)
    }
}
