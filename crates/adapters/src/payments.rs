//! The built-in `sandbox` payment gateway: no network, deterministic, with declines triggered
//! the way Stripe's test mode triggers them.

use async_trait::async_trait;
use inkcart_app::AppResult;
use inkcart_app::ports::{ChargeOutcome, ChargeRequest, PaymentGateway};
use inkcart_domain::shop::Money;

/// Approves every charge except:
/// - a `paymentToken` starting with `tok_chargeDeclined` (Stripe's test tokens
///   `tok_chargeDeclined`, `tok_chargeDeclinedInsufficientFunds`, …), or `tok_visa_chargeDeclined`;
/// - an amount of 1,000,000.00 or more (over the sandbox card's limit).
///
/// References are `sandbox_<order id>`, so a retried charge of one order gets the same one.
#[derive(Debug, Default, Clone, Copy)]
pub struct SandboxGateway;

/// The amount from which the sandbox declines.
pub const DECLINE_FROM: Money = Money::from_cents(1_000_000_00);

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn charge(&self, request: &ChargeRequest) -> AppResult<ChargeOutcome> {
        let token = request.payment_token.as_deref().unwrap_or("tok_visa");
        if token.starts_with("tok_chargeDeclined") || token == "tok_visa_chargeDeclined" {
            return Ok(ChargeOutcome::Declined {
                reason: format!("test token {token} declines"),
            });
        }
        if request.amount >= DECLINE_FROM {
            return Ok(ChargeOutcome::Declined {
                reason: "amount over the sandbox card limit".to_owned(),
            });
        }
        Ok(ChargeOutcome::Approved {
            reference: format!("sandbox_{}", request.order_id.as_uuid().simple()),
        })
    }

    async fn refund(&self, reference: &str, amount: Money) -> AppResult<()> {
        tracing::info!(%reference, %amount, "sandbox refund");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(token: Option<&str>, cents: i64) -> ChargeRequest {
        ChargeRequest {
            order_id: inkcart_domain::OrderId::generate(),
            amount: Money::from_cents(cents),
            currency: "usd",
            payment_token: token.map(str::to_owned),
            idempotency_key: "k".to_owned(),
        }
    }

    #[tokio::test]
    async fn the_sandbox_approves_ordinary_charges_with_a_stable_reference() {
        let request = charge(None, 25_00);
        let first = SandboxGateway.charge(&request).await.unwrap();
        assert_eq!(first, SandboxGateway.charge(&request).await.unwrap());
        assert!(matches!(first, ChargeOutcome::Approved { .. }));
    }

    #[tokio::test]
    async fn the_sandbox_declines_test_tokens_and_huge_amounts() {
        for token in ["tok_chargeDeclined", "tok_chargeDeclinedInsufficientFunds"] {
            let outcome = SandboxGateway
                .charge(&charge(Some(token), 25_00))
                .await
                .unwrap();
            assert!(matches!(outcome, ChargeOutcome::Declined { .. }), "{token}");
        }
        let outcome = SandboxGateway
            .charge(&charge(None, 1_000_000_00))
            .await
            .unwrap();
        assert!(matches!(outcome, ChargeOutcome::Declined { .. }));
    }
}
