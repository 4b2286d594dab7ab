//! Repository behaviour, every test on SQLite and on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use chrono::{Duration, Utc};
use inkcart_app::AppError;
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{
    Clock, RefreshSession, SessionRepo, Store, SystemClock, UserQuery, UserRepo, UserSortField,
};
use inkcart_domain::ids::SessionFamilyId;
use inkcart_domain::{Email, Role, Tier, User, UserId, UserName};
use inkcart_store::{SqlStore, db_test};
use sea_orm::ConnectionTrait as _;
use uuid::Uuid;

fn user(email: &str, name: Option<&str>) -> User {
    let now = SystemClock.now();
    User {
        id: UserId::from_uuid(Uuid::now_v7()),
        email: Email::parse(email).unwrap(),
        name: name.map(|n| UserName::parse(n).unwrap()),
        role: Role::Viewer,
        tier: Tier::Guest,
        email_verified: false,
        created_at: now,
        updated_at: now,
    }
}

async fn insert(store: &SqlStore, user: &User) -> Result<(), AppError> {
    let mut tx = store.begin().await?;
    UserRepo::insert(store, tx.as_mut(), user, "hash").await?;
    tx.commit().await
}

fn session(user: UserId, family: SessionFamilyId, hash: &str) -> RefreshSession {
    let now = SystemClock.now();
    RefreshSession {
        id: Uuid::now_v7(),
        user_id: user,
        family_id: family,
        token_hash: hash.to_owned(),
        created_at: now,
        expires_at: now + Duration::days(7),
        used_at: None,
        revoked_at: None,
    }
}

fn query(search: Option<&str>, role: Option<Role>, sort: Sort<UserSortField>) -> UserQuery {
    UserQuery {
        page: PageRequest::default(),
        search: search.map(str::to_owned),
        role,
        sort,
    }
}

const NEWEST_FIRST: Sort<UserSortField> = Sort {
    field: UserSortField::CreatedAt,
    direction: Direction::Desc,
};

db_test!(
    async fn a_user_reads_back_exactly_as_written(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", Some("Alice"));
        insert(&store, &alice).await.unwrap();
        assert_eq!(store.find(alice.id).await.unwrap(), Some(alice.clone()));
        let (found, hash) = store.find_credentials(&alice.email).await.unwrap().unwrap();
        assert_eq!(found, alice);
        assert_eq!(hash, "hash");
    }
);

db_test!(
    async fn a_second_user_with_the_same_email_is_a_conflict_and_leaves_no_row(db) {
        let store = SqlStore::new(db.db.clone());
        insert(&store, &user("dup@example.com", None)).await.unwrap();
        let err = insert(&store, &user("dup@example.com", Some("Other"))).await.unwrap_err();
        assert!(matches!(err, AppError::Conflict(ref m) if m == "User already exists"), "{err:?}");
        let page = store.list(&query(None, None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(page.total, 1);
    }
);

db_test!(
    async fn the_database_refuses_a_role_outside_the_known_ones(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", None);
        insert(&store, &alice).await.unwrap();
        let conn = &store.db().writer_for_tests();
        let result = conn
            .execute_unprepared("UPDATE users SET role = 'root' WHERE email = 'alice@example.com'")
            .await;
        assert!(result.is_err(), "the role check constraint did not fire");
    }
);

db_test!(
    async fn listing_searches_email_and_name_case_insensitively_and_treats_wildcards_literally(db) {
        let store = SqlStore::new(db.db.clone());
        insert(&store, &user("ada@example.com", Some("Ada Lovelace"))).await.unwrap();
        insert(&store, &user("grace@navy.mil", Some("Grace Hopper"))).await.unwrap();
        insert(&store, &user("percent@example.com", Some("100% Sure"))).await.unwrap();
        let names = |page: inkcart_app::page::Page<User>| {
            let mut v: Vec<String> = page.items.into_iter().map(|u| u.email.into_string()).collect();
            v.sort();
            v
        };
        let found = store.list(&query(Some("LOVELACE"), None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(names(found), ["ada@example.com"]);
        let found = store.list(&query(Some("NAVY"), None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(names(found), ["grace@navy.mil"]);
        let found = store.list(&query(Some("%"), None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(names(found), ["percent@example.com"]);
        let found = store.list(&query(Some("_"), None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(found.total, 0);
    }
);

db_test!(
    async fn listing_filters_by_role_sorts_and_pages(db) {
        let store = SqlStore::new(db.db.clone());
        for (email, name) in [("c@x.io", Some("Carol")), ("a@x.io", None), ("b@x.io", Some("Bob"))] {
            insert(&store, &user(email, name)).await.unwrap();
        }
        let mut admin = user("z@x.io", Some("Zed"));
        admin.role = Role::Admin;
        insert(&store, &admin).await.unwrap();

        let admins = store.list(&query(None, Some(Role::Admin), NEWEST_FIRST)).await.unwrap();
        assert_eq!(admins.total, 1);
        assert_eq!(admins.items[0].id, admin.id);

        let by_email = store
            .list(&query(None, None, Sort { field: UserSortField::Email, direction: Direction::Asc }))
            .await
            .unwrap();
        let emails: Vec<&str> = by_email.items.iter().map(|u| u.email.as_str()).collect();
        assert_eq!(emails, ["a@x.io", "b@x.io", "c@x.io", "z@x.io"]);

        // Users without a name come last in both directions, on both databases.
        for direction in [Direction::Asc, Direction::Desc] {
            let by_name = store
                .list(&query(None, None, Sort { field: UserSortField::Name, direction }))
                .await
                .unwrap();
            assert_eq!(by_name.items.last().unwrap().email.as_str(), "a@x.io");
        }

        let newest = store.list(&query(None, None, NEWEST_FIRST)).await.unwrap();
        assert_eq!(newest.items[0].id, admin.id);

        let mut second_page = query(None, None, NEWEST_FIRST);
        second_page.page = PageRequest::new(Some(2), Some(3)).unwrap();
        let page = store.list(&second_page).await.unwrap();
        assert_eq!((page.total, page.items.len(), page.total_pages()), (4, 1, 2));
    }
);

db_test!(
    async fn a_refresh_token_can_be_spent_only_once(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", None);
        insert(&store, &alice).await.unwrap();
        let s = session(alice.id, SessionFamilyId::from_uuid(Uuid::now_v7()), "h1");
        let mut tx = store.begin().await.unwrap();
        SessionRepo::insert(&store, tx.as_mut(), &s).await.unwrap();
        tx.commit().await.unwrap();

        let now = Utc::now();
        let mut tx = store.begin().await.unwrap();
        assert!(store.mark_used(tx.as_mut(), s.id, now).await.unwrap());
        assert!(!store.mark_used(tx.as_mut(), s.id, now).await.unwrap());
        tx.commit().await.unwrap();
        assert!(store.find_by_hash("h1").await.unwrap().unwrap().used_at.is_some());
    }
);

db_test!(
    async fn revoking_a_family_leaves_other_families_alone(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", None);
        insert(&store, &alice).await.unwrap();
        let (f1, f2) = (SessionFamilyId::from_uuid(Uuid::now_v7()), SessionFamilyId::from_uuid(Uuid::now_v7()));
        let mut tx = store.begin().await.unwrap();
        for (family, hash) in [(f1, "a"), (f1, "b"), (f2, "c")] {
            SessionRepo::insert(&store, tx.as_mut(), &session(alice.id, family, hash)).await.unwrap();
        }
        assert_eq!(store.revoke_family(tx.as_mut(), f1, Utc::now()).await.unwrap(), 2);
        tx.commit().await.unwrap();
        assert!(store.find_by_hash("a").await.unwrap().unwrap().revoked_at.is_some());
        assert!(store.find_by_hash("c").await.unwrap().unwrap().revoked_at.is_none());

        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.revoke_all_for_user(tx.as_mut(), alice.id, Utc::now()).await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert!(store.find_by_hash("c").await.unwrap().unwrap().revoked_at.is_some());
    }
);

db_test!(
    async fn deleting_a_user_deletes_their_sessions(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", None);
        insert(&store, &alice).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        SessionRepo::insert(&store, tx.as_mut(), &session(alice.id, SessionFamilyId::from_uuid(Uuid::now_v7()), "h")).await.unwrap();
        assert!(store.delete(tx.as_mut(), alice.id).await.unwrap());
        tx.commit().await.unwrap();
        assert!(store.find_by_hash("h").await.unwrap().is_none());
        let mut tx = store.begin().await.unwrap();
        assert!(!store.delete(tx.as_mut(), alice.id).await.unwrap());
    }
);

db_test!(
    async fn a_transaction_dropped_without_commit_writes_nothing(db) {
        let store = SqlStore::new(db.db.clone());
        let alice = user("alice@example.com", None);
        {
            let mut tx = store.begin().await.unwrap();
            UserRepo::insert(&store, tx.as_mut(), &alice, "hash").await.unwrap();
        }
        assert_eq!(store.find(alice.id).await.unwrap(), None);
    }
);

db_test!(
    async fn a_migrated_database_is_ready(db) {
        let store = SqlStore::new(db.db.clone());
        assert_eq!(store.check_ready().await, Ok(()));
        assert!(db.db.pending_migrations().await.unwrap().is_empty());
    }
);

#[tokio::test]
async fn an_unmigrated_database_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let db = inkcart_store::Db::connect(&inkcart_store::DbOptions {
        url: None,
        data_dir: dir.path().to_path_buf(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .await
    .unwrap();
    let store = SqlStore::new(db);
    assert_eq!(
        store.check_ready().await,
        Err("migrations pending".to_owned())
    );
}

#[tokio::test]
async fn the_sqlite_file_is_created_in_the_data_dir_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested");
    let db = inkcart_store::Db::connect(&inkcart_store::DbOptions {
        url: None,
        data_dir: data_dir.clone(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .await
    .unwrap();
    db.migrate().await.unwrap();
    assert!(data_dir.join("inkcart.db").exists());
    let conn = db.writer_for_tests();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA foreign_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1);
}
