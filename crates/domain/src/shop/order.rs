use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::Money;
use crate::{OrderId, ProductId, Tier, UserId};

/// Where an order is in its life: `pending → paid → shipped → delivered`, or
/// `pending → cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: &'static [Self] = &[
        Self::Pending,
        Self::Paid,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The statuses of an order that counts as a sale in reports: it was paid.
    pub const SOLD: &'static [Self] = &[Self::Paid, Self::Shipped, Self::Delivered];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status an order must have for `to` to be reached from it.
    pub const fn required_for(to: Self) -> Option<Self> {
        match to {
            Self::Paid | Self::Cancelled => Some(Self::Pending),
            Self::Shipped => Some(Self::Paid),
            Self::Delivered => Some(Self::Shipped),
            Self::Pending => None,
        }
    }

    /// Whether an order may move from `self` to `to`.
    pub fn can_move_to(self, to: Self) -> bool {
        Self::required_for(to) == Some(self)
    }
}

impl FromStr for OrderStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown order status `{s}`"))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An illegal move of the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    #[error("Cannot {action} an order that is {from}")]
    WrongStatus {
        action: &'static str,
        from: OrderStatus,
    },
    #[error("Cannot ship an order without items")]
    NoItems,
}

/// The verb of a transition, for messages.
pub const fn action(to: OrderStatus) -> &'static str {
    match to {
        OrderStatus::Pending => "reopen",
        OrderStatus::Paid => "pay",
        OrderStatus::Shipped => "ship",
        OrderStatus::Delivered => "deliver",
        OrderStatus::Cancelled => "cancel",
    }
}

/// One line of an order; the unit price is copied from the product when the order is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: ProductId,
    pub name: String,
    pub quantity: i32,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// The guide's rule: only paid orders with items can ship.
    pub fn can_ship(&self) -> bool {
        self.status == OrderStatus::Paid && !self.items.is_empty()
    }

    /// Checks a move to `to` without making it.
    pub fn check_transition(&self, to: OrderStatus) -> Result<(), TransitionError> {
        if !self.status.can_move_to(to) {
            return Err(TransitionError::WrongStatus {
                action: action(to),
                from: self.status,
            });
        }
        if to == OrderStatus::Shipped && !self.can_ship() {
            return Err(TransitionError::NoItems);
        }
        Ok(())
    }

    fn transition(&mut self, to: OrderStatus) -> Result<(), TransitionError> {
        self.check_transition(to)?;
        self.status = to;
        Ok(())
    }

    pub fn pay(&mut self) -> Result<(), TransitionError> {
        self.transition(OrderStatus::Paid)
    }

    pub fn ship(&mut self) -> Result<(), TransitionError> {
        self.transition(OrderStatus::Shipped)
    }

    pub fn deliver(&mut self) -> Result<(), TransitionError> {
        self.transition(OrderStatus::Delivered)
    }

    pub fn cancel(&mut self) -> Result<(), TransitionError> {
        self.transition(OrderStatus::Cancelled)
    }
}

/// One cart line as the rules see it: what is asked for, at what price, and whether it can be
/// sold at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub name: String,
    pub unit_price: Money,
    /// As sent by the client: anything but a positive whole number is refused.
    pub quantity: i64,
    /// `false` for an unknown or deactivated product.
    pub available: bool,
}

/// The largest quantity of one product in one order.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub const MIN_ORDER: Money = Money::from_cents(10_00);

/// The most lines one order may have. Bounds the work of placing an order and the size of an
/// order wherever it is read (GraphQL's `myOrders` charges for this many items per order).
pub const MAX_LINES: usize = 100;

/// An order rule, broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrderRule {
    #[error("Cart is empty")]
    EmptyCart,
    #[error("An order has at most {MAX_LINES} lines")]
    TooManyLines,
    /// A quantity that is not a whole number from 1 to [`MAX_QUANTITY`].
    #[error("Invalid quantity for {0}")]
    InvalidQuantity(String),
    /// An unknown or deactivated product (named by its id when unknown).
    #[error("Product {0} is not available")]
    NotAvailable(String),
    #[error("Order total is too large")]
    TotalTooLarge,
    #[error("Minimum order amount is $10")]
    BelowMinimum,
}

/// A broken order rule; `line` is the cart line it is about, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderViolation {
    pub line: Option<usize>,
    pub rule: OrderRule,
}

impl OrderViolation {
    const fn whole(rule: OrderRule) -> Self {
        Self { line: None, rule }
    }
}

/// The rules on how many lines an order has (none, more than [`MAX_LINES`]): checked before
/// its products are looked up, so that no cart of any size reaches the database.
pub fn check_line_count(lines: usize) -> Result<(), Vec<OrderViolation>> {
    if lines == 0 {
        return Err(vec![OrderViolation::whole(OrderRule::EmptyCart)]);
    }
    if lines > MAX_LINES {
        return Err(vec![OrderViolation::whole(OrderRule::TooManyLines)]);
    }
    Ok(())
}

/// The guide's `validateOrder`: every broken rule. An empty cart is only that; otherwise each
/// line's problems (quantity, availability) are listed, and the minimum amount is checked once
/// every line is valid (a subtotal of broken lines would only mislead).
pub fn validate_order(lines: &[CartLine]) -> Result<(), Vec<OrderViolation>> {
    check_line_count(lines.len())?;
    let mut violations = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            violations.push(OrderViolation {
                line: Some(i),
                rule: OrderRule::InvalidQuantity(line.name.clone()),
            });
        }
        if !line.available {
            violations.push(OrderViolation {
                line: Some(i),
                rule: OrderRule::NotAvailable(line.name.clone()),
            });
        }
    }
    if violations.is_empty() {
        let subtotal = lines.iter().try_fold(Money::ZERO, |sum, l| {
            l.unit_price
                .checked_mul(l.quantity)
                .and_then(|t| sum.checked_add(t))
        });
        let rule = match subtotal {
            None => Some(OrderRule::TotalTooLarge),
            Some(s) if s < MIN_ORDER => Some(OrderRule::BelowMinimum),
            Some(_) => None,
        };
        violations.extend(rule.map(OrderViolation::whole));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// One line of an order as the buyer asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedLine {
    pub product_id: ProductId,
    /// As sent: anything but a whole number from 1 to [`MAX_QUANTITY`] breaks a rule.
    pub quantity: i64,
}

/// What placing an order needs to know of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    pub name: &'a str,
    pub price: Money,
    pub active: bool,
}

/// The guide's order placement, whole: checks every rule over the lines as asked, merges the
/// lines of one product into one, puts lines in product-id order (the order in which stock is
/// taken, so that concurrent orders lock rows alike) and prices them with the buyer's tier
/// discount. `offers` are the products found; a product not among them is not available. The
/// result is a pending order for `buyer`, or every broken rule.
pub fn place_order<'a>(
    id: OrderId,
    buyer: UserId,
    tier: Tier,
    lines: &[RequestedLine],
    offers: impl Fn(ProductId) -> Option<Offer<'a>>,
    now: DateTime<Utc>,
) -> Result<Order, Vec<OrderViolation>> {
    let cart: Vec<CartLine> = lines
        .iter()
        .map(|line| match offers(line.product_id) {
            Some(offer) => CartLine {
                name: offer.name.to_owned(),
                unit_price: offer.price,
                quantity: line.quantity,
                available: offer.active,
            },
            None => CartLine {
                name: line.product_id.to_string(),
                unit_price: Money::ZERO,
                quantity: line.quantity,
                available: false,
            },
        })
        .collect();
    validate_order(&cart)?;

    let mut merged: Vec<(ProductId, i64)> = Vec::with_capacity(lines.len());
    for line in lines {
        match merged.iter_mut().find(|(id, _)| *id == line.product_id) {
            Some((_, quantity)) => *quantity += line.quantity,
            None => merged.push((line.product_id, line.quantity)),
        }
    }
    merged.sort_unstable_by_key(|(id, _)| *id);
    let mut items = Vec::with_capacity(merged.len());
    for (product_id, quantity) in merged {
        // Validated above: every product is on offer and every quantity is in range, so a
        // merged line holds at most MAX_LINES × MAX_QUANTITY, well within i32.
        let offer = offers(product_id).ok_or_else(|| {
            vec![OrderViolation::whole(OrderRule::NotAvailable(
                product_id.to_string(),
            ))]
        })?;
        let quantity = i32::try_from(quantity).map_err(|_| {
            vec![OrderViolation::whole(OrderRule::InvalidQuantity(
                offer.name.to_owned(),
            ))]
        })?;
        items.push(OrderItem {
            product_id,
            name: offer.name.to_owned(),
            quantity,
            unit_price: offer.price,
            line_total: Money::ZERO,
        });
    }
    let priced: Vec<(Money, i64)> = items
        .iter()
        .map(|item| (item.unit_price, i64::from(item.quantity)))
        .collect();
    let totals = price_order(&priced, tier)
        .ok_or_else(|| vec![OrderViolation::whole(OrderRule::TotalTooLarge)])?;
    for (item, line_total) in items.iter_mut().zip(totals.line_totals) {
        item.line_total = line_total;
    }
    Ok(Order {
        id,
        user_id: buyer,
        status: OrderStatus::Pending,
        items,
        subtotal: totals.subtotal,
        discount: totals.discount,
        total: totals.total,
        created_at: now,
        updated_at: now,
    })
}

/// The guide's `calculateDiscount`, as a percentage: premium 20 %, regular 10 %, guest 0.
pub const fn discount_for(tier: Tier) -> u32 {
    match tier {
        Tier::Premium => 20,
        Tier::Regular => 10,
        Tier::Guest => 0,
    }
}

/// The money of an order: each line, the subtotal, the tier discount (half-up to the cent) and
/// the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTotals {
    pub line_totals: Vec<Money>,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

/// Prices validated lines (`(unit price, quantity)`); `None` on overflow.
pub fn price_order(lines: &[(Money, i64)], tier: Tier) -> Option<OrderTotals> {
    let line_totals = lines
        .iter()
        .map(|(price, quantity)| price.checked_mul(*quantity))
        .collect::<Option<Vec<_>>>()?;
    let subtotal = line_totals
        .iter()
        .try_fold(Money::ZERO, |sum, t| sum.checked_add(*t))?;
    let discount = subtotal.percent_half_up(discount_for(tier))?;
    let total = subtotal.checked_sub(discount)?;
    Some(OrderTotals {
        line_totals,
        subtotal,
        discount,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(name: &str, dollars: i64, quantity: i64) -> CartLine {
        CartLine {
            name: name.to_owned(),
            unit_price: Money::from_cents(dollars * 100),
            quantity,
            available: true,
        }
    }

    fn messages(lines: &[CartLine]) -> Vec<String> {
        validate_order(lines)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.rule.to_string())
            .collect()
    }

    // The guide's unit tests of OrderService.

    #[test]
    fn an_empty_cart_fails() {
        assert!(messages(&[]).contains(&"Cart is empty".to_owned()));
    }

    #[test]
    fn a_total_under_10_dollars_fails() {
        assert!(
            messages(&[line("Item", 5, 1)]).contains(&"Minimum order amount is $10".to_owned())
        );
    }

    #[test]
    fn an_invalid_quantity_fails() {
        assert!(
            messages(&[line("Item", 20, -1)]).contains(&"Invalid quantity for Item".to_owned())
        );
        assert!(messages(&[line("Item", 20, 0)]).contains(&"Invalid quantity for Item".to_owned()));
    }

    #[test]
    fn an_order_of_more_than_100_lines_fails_on_that_alone() {
        let lines: Vec<CartLine> = (0..=MAX_LINES).map(|_| line("Item", 20, 0)).collect();
        assert_eq!(messages(&lines), ["An order has at most 100 lines"]);
        let lines: Vec<CartLine> = (0..MAX_LINES).map(|_| line("Item", 20, 1)).collect();
        assert_eq!(validate_order(&lines), Ok(()));
    }

    #[test]
    fn the_line_count_alone_refuses_an_empty_cart_and_more_than_100_lines() {
        let rules =
            |n| check_line_count(n).map_err(|v| v.into_iter().map(|v| v.rule).collect::<Vec<_>>());
        assert_eq!(rules(0), Err(vec![OrderRule::EmptyCart]));
        assert_eq!(rules(MAX_LINES + 1), Err(vec![OrderRule::TooManyLines]));
        assert_eq!(rules(1), Ok(()));
        assert_eq!(rules(MAX_LINES), Ok(()));
    }

    #[test]
    fn a_valid_order_passes() {
        assert_eq!(
            validate_order(&[line("Item 1", 10, 1), line("Item 2", 5, 2)]),
            Ok(())
        );
    }

    #[test]
    fn premium_customers_get_20_percent() {
        assert_eq!(
            Money::from_cents(100_00).percent_half_up(discount_for(Tier::Premium)),
            Some(Money::from_cents(20_00))
        );
    }

    #[test]
    fn regular_customers_get_10_percent() {
        assert_eq!(
            Money::from_cents(100_00).percent_half_up(discount_for(Tier::Regular)),
            Some(Money::from_cents(10_00))
        );
    }

    #[test]
    fn guests_get_no_discount() {
        assert_eq!(
            Money::from_cents(100_00).percent_half_up(discount_for(Tier::Guest)),
            Some(Money::ZERO)
        );
    }

    // Beyond the guide.

    #[test]
    fn exactly_10_dollars_is_enough() {
        assert_eq!(validate_order(&[line("Item", 10, 1)]), Ok(()));
    }

    #[test]
    fn an_unavailable_product_is_named() {
        let mut gone = line("Old Mug", 20, 1);
        gone.available = false;
        assert!(messages(&[gone]).contains(&"Product Old Mug is not available".to_owned()));
    }

    #[test]
    fn every_broken_line_is_listed_before_the_minimum_is_judged() {
        let mut gone = line("C", 50, 1);
        gone.available = false;
        let lines = [line("A", 1, 1), line("B", 1, -3), gone];
        assert_eq!(
            messages(&lines),
            ["Invalid quantity for B", "Product C is not available"]
        );
        let violations = validate_order(&lines).unwrap_err();
        assert_eq!(violations[0].line, Some(1));
        assert_eq!(violations[1].line, Some(2));
        assert_eq!(
            messages(&[line("A", 1, 1)]),
            ["Minimum order amount is $10"]
        );
    }

    #[test]
    fn an_order_too_large_to_count_is_refused_not_wrapped() {
        let lines = [line("A", 100_000_000_000, MAX_QUANTITY)];
        assert!(messages(&lines).contains(&"Order total is too large".to_owned()));
    }

    fn place(
        lines: &[RequestedLine],
        offers: &[(ProductId, Offer<'static>)],
    ) -> Result<Order, Vec<OrderViolation>> {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        place_order(
            OrderId::generate(),
            UserId::generate(),
            Tier::Regular,
            lines,
            |id| offers.iter().find(|(p, _)| *p == id).map(|(_, o)| *o),
            now,
        )
    }

    fn offer(name: &'static str, cents: i64) -> Offer<'static> {
        Offer {
            name,
            price: Money::from_cents(cents),
            active: true,
        }
    }

    #[test]
    fn placing_merges_the_lines_of_one_product_orders_them_by_id_and_prices_them() {
        let (a, b) = (ProductId::generate(), ProductId::generate());
        let offers = [(a, offer("Mug", 1250)), (b, offer("Pot", 4000))];
        let asked = [
            RequestedLine {
                product_id: b,
                quantity: 1,
            },
            RequestedLine {
                product_id: a,
                quantity: 2,
            },
            RequestedLine {
                product_id: b,
                quantity: 2,
            },
        ];
        let order = place(&asked, &offers).unwrap();
        let lines: Vec<(ProductId, &str, i32, i64)> = order
            .items
            .iter()
            .map(|i| {
                (
                    i.product_id,
                    i.name.as_str(),
                    i.quantity,
                    i.line_total.cents(),
                )
            })
            .collect();
        assert_eq!(lines, [(a, "Mug", 2, 2500), (b, "Pot", 3, 12000)]);
        assert_eq!(order.subtotal, Money::from_cents(14500));
        assert_eq!(order.discount, Money::from_cents(1450));
        assert_eq!(order.total, Money::from_cents(13050));
        assert_eq!(order.status, OrderStatus::Pending);
    }

    #[test]
    fn placing_lists_every_broken_rule_with_its_line_and_names_an_unknown_product_by_id() {
        let (mug, gone, unknown) = (
            ProductId::generate(),
            ProductId::generate(),
            ProductId::generate(),
        );
        let offers = [
            (mug, offer("Mug", 1250)),
            (
                gone,
                Offer {
                    active: false,
                    ..offer("Old Pot", 4000)
                },
            ),
        ];
        let asked = [
            RequestedLine {
                product_id: mug,
                quantity: 0,
            },
            RequestedLine {
                product_id: gone,
                quantity: 1,
            },
            RequestedLine {
                product_id: unknown,
                quantity: 1,
            },
        ];
        let violations = place(&asked, &offers).unwrap_err();
        assert_eq!(
            violations,
            [
                OrderViolation {
                    line: Some(0),
                    rule: OrderRule::InvalidQuantity("Mug".to_owned())
                },
                OrderViolation {
                    line: Some(1),
                    rule: OrderRule::NotAvailable("Old Pot".to_owned())
                },
                OrderViolation {
                    line: Some(2),
                    rule: OrderRule::NotAvailable(unknown.to_string())
                },
            ]
        );
        assert_eq!(
            place(&[], &offers).unwrap_err(),
            [OrderViolation {
                line: None,
                rule: OrderRule::EmptyCart
            }]
        );
    }

    #[test]
    fn pricing_applies_the_tier_discount_half_up() {
        let totals = price_order(
            &[(Money::from_cents(3333), 1), (Money::from_cents(1), 2)],
            Tier::Regular,
        )
        .unwrap();
        assert_eq!(totals.subtotal, Money::from_cents(3335));
        assert_eq!(totals.discount, Money::from_cents(334)); // 333.5 → 334
        assert_eq!(totals.total, Money::from_cents(3001));
        assert_eq!(
            totals.line_totals,
            [Money::from_cents(3333), Money::from_cents(2)]
        );
    }

    fn order(status: OrderStatus, items: usize) -> Order {
        Order {
            id: OrderId::generate(),
            user_id: UserId::generate(),
            status,
            items: (0..items)
                .map(|_| OrderItem {
                    product_id: ProductId::generate(),
                    name: "Mug".to_owned(),
                    quantity: 1,
                    unit_price: Money::from_cents(1000),
                    line_total: Money::from_cents(1000),
                })
                .collect(),
            subtotal: Money::from_cents(1000),
            discount: Money::ZERO,
            total: Money::from_cents(1000),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn an_order_moves_pending_paid_shipped_delivered() {
        let mut o = order(OrderStatus::Pending, 1);
        o.pay().unwrap();
        assert!(o.can_ship());
        o.ship().unwrap();
        o.deliver().unwrap();
        assert_eq!(o.status, OrderStatus::Delivered);
    }

    #[test]
    fn only_pending_orders_are_cancelled_or_paid() {
        let mut paid = order(OrderStatus::Paid, 1);
        assert_eq!(
            paid.cancel(),
            Err(TransitionError::WrongStatus {
                action: "cancel",
                from: OrderStatus::Paid
            })
        );
        assert_eq!(
            paid.pay().unwrap_err().to_string(),
            "Cannot pay an order that is paid"
        );
        let mut pending = order(OrderStatus::Pending, 1);
        pending.cancel().unwrap();
        assert!(pending.pay().is_err());
    }

    #[test]
    fn only_paid_orders_with_items_ship() {
        assert!(!order(OrderStatus::Pending, 1).can_ship());
        assert_eq!(
            order(OrderStatus::Pending, 1)
                .ship()
                .unwrap_err()
                .to_string(),
            "Cannot ship an order that is pending"
        );
        assert_eq!(
            order(OrderStatus::Paid, 0).ship(),
            Err(TransitionError::NoItems)
        );
        assert!(order(OrderStatus::Paid, 2).ship().is_ok());
    }

    #[test]
    fn nothing_leaves_a_final_status() {
        for from in [OrderStatus::Delivered, OrderStatus::Cancelled] {
            for to in OrderStatus::ALL {
                assert!(!from.can_move_to(*to), "{from} -> {to}");
            }
        }
    }

    proptest! {
        #[test]
        fn totals_are_never_negative_and_discounts_never_exceed_the_subtotal(
            lines in proptest::collection::vec((0i64..10_000_000, 1i64..1000), 0..20),
            tier in prop_oneof![Just(Tier::Guest), Just(Tier::Regular), Just(Tier::Premium)],
        ) {
            let lines: Vec<(Money, i64)> = lines.into_iter().map(|(c, q)| (Money::from_cents(c), q)).collect();
            let totals = price_order(&lines, tier).unwrap();
            prop_assert!(totals.total >= Money::ZERO);
            prop_assert!(totals.discount >= Money::ZERO);
            prop_assert!(totals.discount <= totals.subtotal);
            prop_assert_eq!(totals.subtotal.checked_sub(totals.discount), Some(totals.total));
        }
    }
}
