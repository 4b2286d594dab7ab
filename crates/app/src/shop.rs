//! Products, orders, payments and reports: the guide's e-commerce rules over the ports.

use std::collections::HashMap;

use chrono::NaiveDate;
use inkcart_domain::shop::order::{OrderViolation, TransitionError};
use inkcart_domain::shop::{
    Money, Offer, Order, OrderStatus, Product, RequestedLine, check_line_count, place_order,
    product_description, product_name, product_stock,
};
use inkcart_domain::{Actor, FieldError, OrderId, PaymentId, ProductId, Role, Tier, UserId};

use crate::error::messages;
use crate::events::Event;
use crate::page::Page;
use crate::ports::{
    ChargeOutcome, ChargeRequest, Claim, DailySales, OrderQuery, Payment, ProductQuery, Removal,
    TopProduct,
};
use std::sync::Arc;
use std::time::Duration;

use crate::events::EventLog;
use crate::identity::unless_actor_gone;
use crate::ports::{
    Clock, IdempotencyRepo, OrderRepo, PaymentGateway, PriceOrder, ProductRepo, Store, UserRepo,
};
use crate::{AppError, AppResult, Deps, ErrorCode, Settings, Shared};

/// Product fields as received; the price is a decimal string (`"19.99"`).
#[derive(Debug, Clone, Default)]
pub struct ProductInput {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub price: Option<String>,
    pub stock: Option<i64>,
    pub active: Option<bool>,
}

/// An idempotency key with the fingerprint of its request.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
}

/// The result of an idempotent write: done now, or the result of the first request with the
/// same key (the order as it was then; the caller renders both the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fresh(Order),
    Replayed(Order),
}

impl Outcome {
    pub fn order(&self) -> &Order {
        match self {
            Self::Fresh(order) | Self::Replayed(order) => order,
        }
    }

    pub fn into_order(self) -> Order {
        match self {
            Self::Fresh(order) | Self::Replayed(order) => order,
        }
    }
}

fn product_errors(err: inkcart_domain::shop::ProductError, field: &str) -> FieldError {
    FieldError::new(field, err.to_string())
}

fn parse_price(raw: &str, errors: &mut Vec<FieldError>) -> Option<Money> {
    Money::parse(raw)
        .map_err(|e| errors.push(FieldError::new("price", format!("Price {e}"))))
        .ok()
}

fn transition_conflict(err: &TransitionError) -> AppError {
    AppError::Conflict(ErrorCode::InvalidTransition, err.to_string())
}

fn order_violations(violations: Vec<OrderViolation>) -> AppError {
    AppError::Rules(
        violations
            .into_iter()
            .map(|v| {
                let field = v
                    .line
                    .map_or_else(|| "items".to_owned(), |i| format!("items[{i}]"));
                FieldError::new(field, v.rule.to_string())
            })
            .collect(),
    )
}

/// A move of an order's status that is not a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderMove {
    Cancel,
    Ship,
    Deliver,
}

impl OrderMove {
    /// The status the move leads to.
    pub const fn status(self) -> OrderStatus {
        match self {
            Self::Cancel => OrderStatus::Cancelled,
            Self::Ship => OrderStatus::Shipped,
            Self::Deliver => OrderStatus::Delivered,
        }
    }
}

/// Products, orders, payments and sales reports, with the product cache.
#[derive(Clone)]
pub struct Shop {
    store: Arc<dyn Store>,
    products: Arc<dyn ProductRepo>,
    orders: Arc<dyn OrderRepo>,
    idempotency: Arc<dyn IdempotencyRepo>,
    payments: Arc<dyn PaymentGateway>,
    /// The buyer of an order, and whether a buyer deleted meanwhile caused a failure.
    users: Arc<dyn UserRepo>,
    clock: Arc<dyn Clock>,
    events: EventLog,
    /// `None` when the product cache is off.
    product_cache: Option<moka::future::Cache<ProductId, Shared<Product>>>,
    idempotency_ttl: Duration,
    idempotency_abandon_after: Duration,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop").finish_non_exhaustive()
    }
}

impl Shop {
    pub(crate) fn new(deps: &Deps, settings: &Settings, events: EventLog) -> Self {
        let product_cache = (!settings.product_cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.product_cache_ttl)
                .build()
        });
        Self {
            store: Arc::clone(&deps.store),
            products: Arc::clone(&deps.products),
            orders: Arc::clone(&deps.orders),
            idempotency: Arc::clone(&deps.idempotency),
            payments: Arc::clone(&deps.payments),
            users: Arc::clone(&deps.users),
            clock: Arc::clone(&deps.clock),
            events,
            product_cache,
            idempotency_ttl: settings.idempotency_ttl,
            idempotency_abandon_after: settings.idempotency_abandon_after,
        }
    }

    fn require_role(actor: Actor, role: Role) -> AppResult<()> {
        if actor.has_role(role) {
            Ok(())
        } else {
            Err(AppError::insufficient_permissions())
        }
    }

    // ---- products ----

    pub async fn create_product(&self, actor: Actor, input: ProductInput) -> AppResult<Product> {
        Self::require_role(actor, Role::Editor)?;
        let mut errors = Vec::new();
        let name = match input.name.as_deref() {
            Some(n) => product_name(n)
                .map_err(|e| errors.push(product_errors(e, "name")))
                .ok(),
            None => {
                errors.push(FieldError::new("name", "name is required"));
                None
            }
        };
        let description = product_description(input.description.flatten().as_deref())
            .map_err(|e| errors.push(product_errors(e, "description")))
            .ok();
        let price = match input.price.as_deref() {
            Some(p) => parse_price(p, &mut errors),
            None => {
                errors.push(FieldError::new("price", "price is required"));
                None
            }
        };
        let stock = product_stock(input.stock.unwrap_or(0))
            .map_err(|e| errors.push(product_errors(e, "stock")))
            .ok();
        let (Some(name), Some(description), Some(price), Some(stock), true) =
            (name, description, price, stock, errors.is_empty())
        else {
            return Err(AppError::Validation(errors));
        };
        let now = self.clock.now();
        let product = Product {
            id: ProductId::generate(),
            name,
            description,
            price,
            stock,
            active: input.active.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        self.products.insert(tx.as_mut(), &product).await?;
        tx.commit().await?;
        Ok(product)
    }

    /// A product by id, through the in-process cache (when it is on).
    pub async fn get_product(&self, id: ProductId) -> AppResult<Shared<Product>> {
        if let Some(cache) = &self.product_cache
            && let Some(product) = cache.get(&id).await
        {
            return Ok(product);
        }
        let product = Shared::new(
            self.products
                .find(id)
                .await?
                .ok_or_else(|| AppError::not_found("Product"))?,
        );
        if let Some(cache) = &self.product_cache {
            cache.insert(id, product.clone()).await;
        }
        Ok(product)
    }

    /// Drops a product from the in-process cache after a write.
    async fn forget_product(&self, id: ProductId) {
        if let Some(cache) = &self.product_cache {
            cache.invalidate(&id).await;
        }
    }

    pub async fn list_products(&self, query: &ProductQuery) -> AppResult<Page<Product>> {
        if let (Some(min), Some(max)) = (query.min_price, query.max_price)
            && min > max
        {
            return Err(AppError::field(
                "minPrice",
                "minPrice must not exceed maxPrice",
            ));
        }
        self.products.list(query).await
    }

    /// Changes the given fields of a product (editors and admins).
    pub async fn update_product(
        &self,
        actor: Actor,
        id: ProductId,
        input: ProductInput,
    ) -> AppResult<Product> {
        Self::require_role(actor, Role::Editor)?;
        let mut product = self
            .products
            .find(id)
            .await?
            .ok_or_else(|| AppError::not_found("Product"))?;
        let mut errors = Vec::new();
        if let Some(name) = input.name.as_deref() {
            match product_name(name) {
                Ok(n) => product.name = n,
                Err(e) => errors.push(product_errors(e, "name")),
            }
        }
        if let Some(description) = &input.description {
            match product_description(description.as_deref()) {
                Ok(d) => product.description = d,
                Err(e) => errors.push(product_errors(e, "description")),
            }
        }
        if let Some(price) = input
            .price
            .as_deref()
            .and_then(|p| parse_price(p, &mut errors))
        {
            product.price = price;
        }
        if let Some(stock) = input.stock {
            match product_stock(stock) {
                Ok(s) => product.stock = s,
                Err(e) => errors.push(product_errors(e, "stock")),
            }
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        product.active = input.active.unwrap_or(product.active);
        product.updated_at = self.clock.now();
        let mut tx = self.store.begin().await?;
        let updated = self.products.update(tx.as_mut(), &product).await?;
        tx.commit().await?;
        self.forget_product(id).await;
        if !updated {
            return Err(AppError::not_found("Product"));
        }
        Ok(product)
    }

    /// Deletes a product (admins only); one that orders reference is deactivated instead.
    pub async fn delete_product(&self, actor: Actor, id: ProductId) -> AppResult<Removal> {
        Self::require_role(actor, Role::Admin)?;
        let mut tx = self.store.begin().await?;
        let removal = self
            .products
            .remove(tx.as_mut(), id, self.clock.now())
            .await?;
        tx.commit().await?;
        self.forget_product(id).await;
        removal.ok_or_else(|| AppError::not_found("Product"))
    }

    // ---- orders ----

    /// Places an order: validates and prices it, applies the buyer's tier discount, and in one
    /// transaction reserves the stock of every line and writes the order. If any line is short,
    /// nothing is reserved and the answer names the product.
    ///
    /// `buyer` is the account a verified access token names; the account is read with the
    /// products, in the order's own transaction on SQLite and in the products' one read on
    /// PostgreSQL, not by the request before. Its tier as stored prices the order. An account
    /// that does not exist (deleted since its token was issued, or as the order is written) is
    /// refused with a 401 before any rule of the order, and nothing is written.
    pub async fn create_order(
        &self,
        buyer: UserId,
        lines: Vec<RequestedLine>,
        idempotency: Option<Idempotency<'_>>,
    ) -> AppResult<Outcome> {
        let claimed = self.claim(buyer, idempotency.as_ref()).await;
        if let Some(replay) = unless_actor_gone(self.users.as_ref(), buyer, claimed).await? {
            return Ok(replay);
        }
        let placed = self.place_order(buyer, &lines, idempotency.as_ref()).await;
        let result = unless_actor_gone(self.users.as_ref(), buyer, placed).await;
        self.settle_claim(buyer, idempotency.as_ref(), result).await
    }

    async fn place_order(
        &self,
        buyer: UserId,
        lines: &[RequestedLine],
        idempotency: Option<&Idempotency<'_>>,
    ) -> AppResult<Order> {
        // The products are read for the lines (on SQLite by the writer): a cart of any size
        // stops here, before the account is read; an account that is gone is told first, as
        // on every route.
        if let Err(violations) = check_line_count(lines.len()) {
            return Err(match self.users.find(buyer).await {
                Ok(None) => AppError::invalid_token(),
                _ => order_violations(violations),
            });
        }
        let mut ids: Vec<ProductId> = lines.iter().map(|l| l.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let now = self.clock.now();
        let (events, lines) = (self.events.clone(), lines.to_vec());
        let price: PriceOrder = Box::new(move |tier: Option<Tier>, products: &[Product]| {
            let tier = tier.ok_or_else(AppError::invalid_token)?;
            let products: HashMap<ProductId, &Product> =
                products.iter().map(|p| (p.id, p)).collect();
            let order = place_order(
                OrderId::generate(),
                buyer,
                tier,
                &lines,
                |id| {
                    products.get(&id).map(|p| Offer {
                        name: &p.name,
                        price: p.price,
                        active: p.active,
                    })
                },
                now,
            )
            .map_err(order_violations)?;
            let created = events.outbox_event(&Event::OrderCreated {
                order_id: order.id,
                user_id: order.user_id,
            })?;
            Ok((order, created))
        });
        let key = idempotency.map(|idem| idem.key);
        let order = self.orders.place(buyer, &ids, price, key, now).await?;
        for item in &order.items {
            self.forget_product(item.product_id).await;
        }
        Ok(order)
    }

    /// Claims the idempotency key, if any; `Some` is the stored answer to replay.
    async fn claim(
        &self,
        user: UserId,
        idempotency: Option<&Idempotency<'_>>,
    ) -> AppResult<Option<Outcome>> {
        let Some(idem) = idempotency else {
            return Ok(None);
        };
        let claim = self
            .idempotency
            .claim(
                user,
                idem.key,
                idem.request_hash,
                self.clock.now(),
                self.idempotency_ttl,
                self.idempotency_abandon_after,
            )
            .await?;
        match claim {
            Claim::Granted => Ok(None),
            Claim::InFlight => Err(AppError::Conflict(
                ErrorCode::IdempotencyKeyInFlight,
                messages::IDEMPOTENCY_IN_FLIGHT.to_owned(),
            )),
            Claim::Mismatch => Err(AppError::Unprocessable(
                ErrorCode::IdempotencyKeyReused,
                messages::IDEMPOTENCY_MISMATCH.to_owned(),
            )),
            Claim::Done(order) => Ok(Some(Outcome::Replayed(*order))),
        }
    }

    /// After the work: a failure gives the key back so that the request can be retried.
    async fn settle_claim(
        &self,
        user: UserId,
        idempotency: Option<&Idempotency<'_>>,
        result: AppResult<Order>,
    ) -> AppResult<Outcome> {
        match (result, idempotency) {
            (Ok(order), _) => Ok(Outcome::Fresh(order)),
            (Err(err), Some(idem)) => {
                if let Err(release) = self.idempotency.release(user, idem.key).await {
                    tracing::error!(error = %release, "could not release an idempotency key");
                }
                Err(err)
            }
            (Err(err), None) => Err(err),
        }
    }

    /// An order its buyer or an admin may see.
    pub async fn get_order(&self, actor: Actor, id: OrderId) -> AppResult<Order> {
        let order = self
            .orders
            .find(id)
            .await?
            .ok_or_else(|| AppError::not_found("Order"))?;
        if order.user_id != actor.id && !actor.is_admin() {
            // Someone else's order does not exist, as far as the caller can tell.
            return Err(AppError::not_found("Order"));
        }
        Ok(order)
    }

    /// The caller's orders; admins see everyone's (or one buyer's with `user_id`).
    pub async fn list_orders(&self, actor: Actor, mut query: OrderQuery) -> AppResult<Page<Order>> {
        if !actor.is_admin() {
            if query.user_id.is_some_and(|u| u != actor.id) {
                return Err(AppError::insufficient_permissions());
            }
            query.user_id = Some(actor.id);
        }
        self.orders.list(&query).await
    }

    /// Pays a pending order through the gateway; the order becomes `paid` only once the
    /// gateway approves. A decline leaves it pending.
    pub async fn pay_order(
        &self,
        actor: Actor,
        id: OrderId,
        payment_token: Option<String>,
        idempotency: Option<Idempotency<'_>>,
    ) -> AppResult<Outcome> {
        if let Some(replay) = self.claim(actor.id, idempotency.as_ref()).await? {
            return Ok(replay);
        }
        let result = self
            .pay(actor, id, payment_token, idempotency.as_ref())
            .await;
        self.settle_claim(actor.id, idempotency.as_ref(), result)
            .await
    }

    async fn pay(
        &self,
        actor: Actor,
        id: OrderId,
        payment_token: Option<String>,
        idempotency: Option<&Idempotency<'_>>,
    ) -> AppResult<Order> {
        let mut order = self.get_order(actor, id).await?;
        if order.user_id != actor.id {
            return Err(AppError::not_owner());
        }
        order
            .check_transition(OrderStatus::Paid)
            .map_err(|e| transition_conflict(&e))?;
        let gateway = &self.payments;
        let charge = ChargeRequest {
            order_id: order.id,
            amount: order.total,
            currency: "usd",
            payment_token,
            idempotency_key: format!("order-{}-pay", order.id),
        };
        let reference = match gateway.charge(&charge).await? {
            ChargeOutcome::Approved { reference } => reference,
            ChargeOutcome::Declined { reason } => {
                tracing::info!(order_id = %order.id, %reason, "payment declined");
                return Err(AppError::PaymentRequired(
                    messages::PAYMENT_DECLINED.to_owned(),
                ));
            }
        };
        let now = self.clock.now();
        let mut payment = Payment {
            id: PaymentId::generate(),
            order_id: order.id,
            gateway: gateway.name().to_owned(),
            reference: reference.clone(),
            amount: order.total,
            status: "succeeded".to_owned(),
            created_at: now,
        };
        let mut tx = self.store.begin().await?;
        if !self
            .orders
            .set_status(
                tx.as_mut(),
                order.id,
                OrderStatus::Pending,
                OrderStatus::Paid,
                now,
            )
            .await?
        {
            // The order moved on (cancelled) while the charge ran: give the money back.
            drop(tx);
            gateway.refund(&reference, order.total).await?;
            payment.status = "refunded".to_owned();
            let mut tx = self.store.begin().await?;
            self.orders.insert_payment(tx.as_mut(), &payment).await?;
            tx.commit().await?;
            let current = self.get_order(actor, id).await?;
            let err = current.check_transition(OrderStatus::Paid).err().unwrap_or(
                TransitionError::WrongStatus {
                    action: "pay",
                    from: current.status,
                },
            );
            return Err(transition_conflict(&err));
        }
        self.orders.insert_payment(tx.as_mut(), &payment).await?;
        self.events
            .record(
                tx.as_mut(),
                &Event::OrderPaid {
                    order_id: order.id,
                    user_id: order.user_id,
                },
            )
            .await?;
        order.pay().map_err(|e| transition_conflict(&e))?;
        order.updated_at = now;
        if let Some(idem) = idempotency {
            self.idempotency
                .complete(tx.as_mut(), actor.id, idem.key, &order, now)
                .await?;
        }
        tx.commit().await?;
        Ok(order)
    }

    /// Moves an order along its status machine: cancels a pending order (its buyer, or an
    /// admin; the stock goes back), ships a paid order with items or marks a shipped one
    /// delivered (editors and admins). Paying is [`Shop::pay_order`].
    pub async fn move_order(&self, actor: Actor, id: OrderId, to: OrderMove) -> AppResult<Order> {
        let target = to.status();
        let mut order = match to {
            OrderMove::Cancel => self.get_order(actor, id).await?,
            OrderMove::Ship | OrderMove::Deliver => {
                Self::require_role(actor, Role::Editor)?;
                self.orders
                    .find(id)
                    .await?
                    .ok_or_else(|| AppError::not_found("Order"))?
            }
        };
        order
            .check_transition(target)
            .map_err(|e| transition_conflict(&e))?;
        let from = order.status;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !self
            .orders
            .set_status(tx.as_mut(), id, from, target, now)
            .await?
        {
            drop(tx);
            return Err(self.lost_race(actor, id, target).await);
        }
        if to == OrderMove::Cancel {
            for item in &order.items {
                self.products
                    .release_stock(tx.as_mut(), item.product_id, item.quantity, now)
                    .await?;
            }
        }
        let (order_id, user_id) = (id, order.user_id);
        let event = match to {
            OrderMove::Cancel => Some(Event::OrderCancelled { order_id, user_id }),
            OrderMove::Ship => Some(Event::OrderShipped { order_id, user_id }),
            OrderMove::Deliver => None,
        };
        if let Some(event) = event {
            self.events.record(tx.as_mut(), &event).await?;
        }
        tx.commit().await?;
        if to == OrderMove::Cancel {
            for item in &order.items {
                self.forget_product(item.product_id).await;
            }
        }
        order.status = target;
        order.updated_at = now;
        Ok(order)
    }

    /// The conflict to report when a guarded status update found the order already moved.
    async fn lost_race(&self, actor: Actor, id: OrderId, to: OrderStatus) -> AppError {
        match self.orders.find(id).await {
            Ok(Some(current)) => match current.check_transition(to) {
                Err(e) => transition_conflict(&e),
                Ok(()) => AppError::conflict(
                    ErrorCode::Conflict,
                    format!("Order {id} changed while it was being updated; try again"),
                ),
            },
            Ok(None) => AppError::not_found("Order"),
            Err(e) => {
                tracing::error!(error = %e, actor = %actor.id, "reloading an order failed");
                e
            }
        }
    }

    /// An order's payments, oldest first, at most `limit` (a page's limit, 1 to 100).
    pub async fn order_payments(
        &self,
        actor: Actor,
        id: OrderId,
        limit: u64,
    ) -> AppResult<Vec<Payment>> {
        self.get_order(actor, id).await?;
        self.orders.payments(id, limit).await
    }

    // ---- reports ----

    pub async fn top_products(&self, actor: Actor, limit: u64) -> AppResult<Vec<TopProduct>> {
        Self::require_role(actor, Role::Admin)?;
        if !(1..=100).contains(&limit) {
            return Err(AppError::field("limit", "limit must be between 1 and 100"));
        }
        self.orders.top_products(limit).await
    }

    pub async fn daily_sales(
        &self,
        actor: Actor,
        from: NaiveDate,
        to: NaiveDate,
    ) -> AppResult<Vec<DailySales>> {
        Self::require_role(actor, Role::Admin)?;
        let out_of_range: Vec<FieldError> = [("from", from), ("to", to)]
            .into_iter()
            .filter(|(_, day)| inkcart_domain::time::check_day(*day).is_err())
            .map(|(field, _)| FieldError::new(field, inkcart_domain::time::OutOfRange.to_string()))
            .collect();
        if !out_of_range.is_empty() {
            return Err(AppError::Validation(out_of_range));
        }
        if from > to {
            return Err(AppError::field("from", "from must not be after to"));
        }
        if (to - from).num_days() > 366 {
            return Err(AppError::field("to", "a report covers at most 366 days"));
        }
        let mut known: HashMap<NaiveDate, DailySales> = self
            .orders
            .daily_sales(from, to)
            .await?
            .into_iter()
            .map(|d| (d.date, d))
            .collect();
        // Every day of the range, quiet days included.
        Ok(from
            .iter_days()
            .take_while(|d| *d <= to)
            .map(|date| {
                known.remove(&date).unwrap_or(DailySales {
                    date,
                    orders: 0,
                    revenue: Money::ZERO,
                })
            })
            .collect())
    }
}
