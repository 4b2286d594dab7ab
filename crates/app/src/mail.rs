//! The emails inkcart sends, as plain text and HTML. Anything a user typed is escaped in HTML.

use inkcart_domain::User;
use inkcart_domain::shop::Order;

use crate::ports::{Attachment, Mail};

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn greeting(user: &User) -> String {
    user.name
        .as_ref()
        .map_or_else(|| "Hello,".to_owned(), |n| format!("Hello {},", n.as_str()))
}

fn html(body: &str) -> String {
    format!(
        "<!doctype html><html><body style=\"font-family: sans-serif; line-height: 1.5\">{body}\
         <p style=\"color:#888\">— inkcart</p></body></html>"
    )
}

pub fn welcome(user: &User) -> Mail {
    let greet = greeting(user);
    Mail {
        to: user.email.as_str().to_owned(),
        subject: "Welcome to inkcart".to_owned(),
        text: format!("{greet}\n\nThanks for joining. Your account is ready.\n\n— inkcart\n"),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>Thanks for joining. Your account is ready.</p>",
            escape(&greet)
        )),
    }
}

pub fn verify_email(user: &User, link: &str) -> Mail {
    let greet = greeting(user);
    Mail {
        to: user.email.as_str().to_owned(),
        subject: "Confirm your email address".to_owned(),
        text: format!(
            "{greet}\n\nConfirm your email address by opening this link:\n\n{link}\n\n\
             If you did not sign up, ignore this message.\n\n— inkcart\n"
        ),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>Confirm your email address:</p><p><a href=\"{link}\">{link}</a></p>\
             <p>If you did not sign up, ignore this message.</p>",
            escape(&greet),
            link = escape(link)
        )),
    }
}

pub fn reset_password(user: &User, link: &str, minutes: i64) -> Mail {
    let greet = greeting(user);
    Mail {
        to: user.email.as_str().to_owned(),
        subject: "Reset your password".to_owned(),
        text: format!(
            "{greet}\n\nSomeone asked to reset the password of this account. To choose a new \
             password, open this link within {minutes} minutes:\n\n{link}\n\n\
             If it was not you, ignore this message: your password stays as it is.\n\n— inkcart\n"
        ),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>Someone asked to reset the password of this account. To choose a new \
             password, open this link within {minutes} minutes:</p><p><a href=\"{link}\">{link}</a></p>\
             <p>If it was not you, ignore this message: your password stays as it is.</p>",
            escape(&greet),
            link = escape(link)
        )),
    }
}

/// To the previous address of an account whose address changed: a stolen session could be
/// taking the account over, and this address is the one its owner still reads.
pub fn email_changed(user: &User, previous: &str) -> Mail {
    let greet = greeting(user);
    let new = user.email.as_str();
    Mail {
        to: previous.to_owned(),
        subject: "Your email address was changed".to_owned(),
        text: format!(
            "{greet}\n\nThe email address of your inkcart account was changed from {previous} \
             to {new}. Messages about the account now go to the new address.\n\n\
             If you did not make this change, someone else may be using your account: contact \
             us at once.\n\n— inkcart\n"
        ),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>The email address of your inkcart account was changed from \
             <strong>{}</strong> to <strong>{}</strong>. Messages about the account now go to the \
             new address.</p><p>If you did not make this change, someone else may be using your \
             account: contact us at once.</p>",
            escape(&greet),
            escape(previous),
            escape(new)
        )),
    }
}

fn order_lines(order: &Order) -> (String, String) {
    let mut text = String::new();
    let mut rows = String::new();
    for item in &order.items {
        text.push_str(&format!(
            "  {} × {} at {} = {}\n",
            item.quantity, item.name, item.unit_price, item.line_total
        ));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            item.quantity,
            escape(&item.name),
            item.unit_price,
            item.line_total
        ));
    }
    (text, rows)
}

pub fn order_confirmation(user: &User, order: &Order) -> Mail {
    let greet = greeting(user);
    let (lines, rows) = order_lines(order);
    Mail {
        to: user.email.as_str().to_owned(),
        subject: format!("Your order {} is confirmed", order.id),
        text: format!(
            "{greet}\n\nThanks for your order {id}:\n\n{lines}\nSubtotal: {sub}\nDiscount: {disc}\n\
             Total paid: {total}\n\nWe will write again when it ships.\n\n— inkcart\n",
            id = order.id,
            sub = order.subtotal,
            disc = order.discount,
            total = order.total
        ),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>Thanks for your order <code>{id}</code>:</p>\
             <table><tr><th>Qty</th><th>Item</th><th>Price</th><th>Total</th></tr>{rows}</table>\
             <p>Subtotal: {sub}<br>Discount: {disc}<br><strong>Total paid: {total}</strong></p>\
             <p>We will write again when it ships.</p>",
            escape(&greet),
            id = order.id,
            sub = order.subtotal,
            disc = order.discount,
            total = order.total
        )),
    }
}

pub fn order_shipped(user: &User, order: &Order) -> Mail {
    let greet = greeting(user);
    let (lines, rows) = order_lines(order);
    Mail {
        to: user.email.as_str().to_owned(),
        subject: format!("Your order {} has shipped", order.id),
        text: format!(
            "{greet}\n\nYour order {} is on its way:\n\n{lines}\n— inkcart\n",
            order.id
        ),
        attachments: Vec::new(),
        html: html(&format!(
            "<p>{}</p><p>Your order <code>{}</code> is on its way:</p><table>{rows}</table>",
            escape(&greet),
            order.id
        )),
    }
}

pub fn sales_report(to: &str, day: &str, orders: i64, revenue: &str, csv: &[u8]) -> Mail {
    Mail {
        to: to.to_owned(),
        subject: format!("Sales report for {day}"),
        text: format!(
            "Sales on {day} (UTC): {orders} orders, {revenue} revenue.\n\nThe CSV is attached.\n\n— inkcart\n"
        ),
        attachments: vec![Attachment {
            filename: format!("sales-{day}.csv"),
            content_type: "text/csv".to_owned(),
            bytes: csv.to_vec(),
        }],
        html: html(&format!(
            "<p>Sales on {day} (UTC): <strong>{orders}</strong> orders, <strong>{revenue}</strong> revenue.</p>\
             <p>The CSV is attached.</p>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use inkcart_domain::{Email, Role, Tier, UserId, UserName};
    use uuid::Uuid;

    fn user(name: &str) -> User {
        User {
            id: UserId::from_uuid(Uuid::now_v7()),
            email: Email::parse("a@b.io").unwrap(),
            name: Some(UserName::parse(name).unwrap()),
            role: Role::Viewer,
            tier: Tier::Guest,
            email_verified: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_name_with_markup_is_escaped_in_html_but_kept_in_text() {
        let mail = welcome(&user("<b>Eve</b>"));
        assert!(mail.html.contains("&lt;b&gt;Eve&lt;/b&gt;"));
        assert!(!mail.html.contains("<b>Eve"));
        assert!(mail.text.contains("Hello <b>Eve</b>,"));
        assert_eq!(mail.to, "a@b.io");
    }

    #[test]
    fn the_email_change_notice_goes_to_the_previous_address_and_names_both() {
        let mail = email_changed(&user("Ann"), "old<x>@b.io");
        assert_eq!(mail.to, "old<x>@b.io");
        assert!(
            mail.text.contains("from old<x>@b.io to a@b.io"),
            "{}",
            mail.text
        );
        assert!(mail.html.contains("old&lt;x&gt;@b.io"));
    }

    #[test]
    fn the_verification_mail_carries_its_link_in_both_bodies() {
        let mail = verify_email(&user("Ann"), "http://x/verify-email?token=abc");
        assert!(mail.text.contains("http://x/verify-email?token=abc"));
        assert!(
            mail.html
                .contains("href=\"http://x/verify-email?token=abc\"")
        );
    }
}
