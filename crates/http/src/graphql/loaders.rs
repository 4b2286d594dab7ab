//! Batch loaders: every key asked for in one step of a query is fetched in one statement.

use std::collections::HashMap;
use std::sync::Arc;

use inkcart_app::App;
use inkcart_app::ports::{CommentView, PostSummary};
use inkcart_domain::{User, UserId};
use uuid::Uuid;

use super::gql_error;

async fn users(app: &App, keys: &[UserId]) -> Result<HashMap<UserId, User>, async_graphql::Error> {
    let users = app.users_by_ids(keys).await.map_err(gql_error)?;
    Ok(users.into_iter().map(|u| (u.id, u)).collect())
}

/// Users by id (posts' authors, and users reached from them).
pub struct Users(pub Arc<App>);

impl async_graphql::dataloader::Loader<UserId> for Users {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, User>, Self::Error> {
        users(&self.0, keys).await
    }
}

/// Comments' authors. A loader of its own: sharing `Users` would let comment authors join the
/// post authors' batch or not depending on timing, and the statement count would vary.
pub struct CommentAuthors(pub Arc<App>);

impl async_graphql::dataloader::Loader<UserId> for CommentAuthors {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, User>, Self::Error> {
        users(&self.0, keys).await
    }
}

/// Published posts by author, newest first.
pub struct PostsByAuthor(pub Arc<App>);

impl async_graphql::dataloader::Loader<UserId> for PostsByAuthor {
    type Value = Vec<PostSummary>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[UserId],
    ) -> Result<HashMap<UserId, Vec<PostSummary>>, Self::Error> {
        let posts = self.0.posts_by_authors(keys).await.map_err(gql_error)?;
        let mut map: HashMap<UserId, Vec<PostSummary>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for post in posts {
            map.entry(post.author.id).or_default().push(post);
        }
        Ok(map)
    }
}

/// Comments by post, oldest first.
pub struct CommentsByPost(pub Arc<App>);

impl async_graphql::dataloader::Loader<Uuid> for CommentsByPost {
    type Value = Vec<CommentView>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<CommentView>>, Self::Error> {
        let comments = self.0.comments_for_posts(keys).await.map_err(gql_error)?;
        let mut map: HashMap<Uuid, Vec<CommentView>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for comment in comments {
            map.entry(comment.comment.post_id)
                .or_default()
                .push(comment);
        }
        Ok(map)
    }
}

/// A post's Markdown and HTML (lists leave them out).
pub struct PostContents(pub Arc<App>);

impl async_graphql::dataloader::Loader<Uuid> for PostContents {
    type Value = (String, String);
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, (String, String)>, Self::Error> {
        self.0.post_contents(keys).await.map_err(gql_error)
    }
}
