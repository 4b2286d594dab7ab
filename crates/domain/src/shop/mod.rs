//! The shop: money, products, orders and the rules that price and move them.

pub mod money;
pub mod order;
pub mod product;

pub use money::Money;
pub use order::{
    CartLine, Offer, Order, OrderItem, OrderRule, OrderStatus, OrderTotals, OrderViolation,
    RequestedLine, TransitionError, check_line_count, discount_for, place_order, price_order,
    validate_order,
};
pub use product::{Product, ProductError, product_description, product_name, product_stock};
