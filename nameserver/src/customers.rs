//! The administration of enrollment over the control socket: tokens (`token create`,
//! `token list`, `token revoke`), approval (`approve`), and customers (`customer limit`,
//! `customer suspend`, `customer resume`, `customer list`). Each change is logged (never a
//! secret) and counted; what the commands print is made here.

use serde::{Deserialize, Serialize};
use tracing::info;
use zones::Directory;
use zones::directory::{CustomerChange, NewToken};
use zones::enroll::{CodeRange, TokenId};
use zones::identity::{CallingCode, Kid};

use crate::control::{ControlReply, ControlResponse};
use crate::metrics::{AdminEvent, Metrics};
use crate::utc::format_utc;

/// An enrollment request from an admin command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum CustomerRequest {
    /// A new token; the reply is its text, shown this once.
    TokenCreate {
        kid: Kid,
        uses: u32,
        /// Seconds from now.
        expires_in: u64,
        codes: Option<CodeRange>,
        approve: bool,
    },
    TokenList,
    TokenRevoke {
        id: TokenId,
    },
    Approve {
        code: CallingCode,
    },
    CustomerLimit {
        kid: Kid,
        /// `None`: no limit.
        limit: Option<u32>,
    },
    CustomerSuspend {
        kid: Kid,
    },
    CustomerResume {
        kid: Kid,
    },
    CustomerList,
}

/// Carries out one request.
pub async fn execute(
    request: CustomerRequest,
    directory: &Directory,
    metrics: Option<&Metrics>,
) -> ControlResponse {
    let now = zones::unix_now();
    let count = |event| {
        if let Some(m) = metrics {
            m.admin(event);
        }
    };
    let text = |text: String| Ok(ControlReply::Text { text });
    match request {
        CustomerRequest::TokenCreate {
            kid,
            uses,
            expires_in,
            codes,
            approve,
        } => {
            if uses == 0 {
                return Err("--uses must be at least 1".into());
            }
            let new = NewToken {
                kid,
                uses,
                expires_at: now.saturating_add(expires_in),
                codes,
                approve,
            };
            let (token, entry) = directory
                .create_token(new, now)
                .await
                .map_err(|e| e.to_string())?;
            count(AdminEvent::TokenCreated);
            let (id, kid, expires) = (&token.id, &entry.kid, format_utc(entry.expires_at));
            let codes = entry
                .codes
                .as_ref()
                .map_or("any".into(), ToString::to_string);
            info!(token = %id, %kid, uses, %expires, %codes, approve, outcome = "accepted", "token create");
            text(format!("{}\n", token.to_text()))
        }
        CustomerRequest::TokenList => {
            let tokens = directory.tokens().map_err(|e| e.to_string())?;
            let mut out = format!(
                "{:<16}  {:<12}  {:<8}  {:>11}  {:<19}  {:<23}  {}\n",
                "ID", "KID", "STATE", "USED/USES", "EXPIRES (UTC)", "CODES", "APPROVE"
            );
            for (id, t) in tokens {
                let used = format!("{}/{}", t.used, t.uses);
                let codes = t.codes.as_ref().map_or("any".into(), ToString::to_string);
                let approve = if t.approve { "yes" } else { "no" };
                out.push_str(&format!(
                    "{:<16}  {:<12}  {:<8}  {:>11}  {:<19}  {:<23}  {}\n",
                    id.as_str(),
                    t.kid.as_str(),
                    t.state(now),
                    used,
                    format_utc(t.expires_at),
                    codes,
                    approve
                ));
            }
            text(out)
        }
        CustomerRequest::TokenRevoke { id } => {
            let token = directory
                .revoke_token(&id, now)
                .await
                .map_err(|e| e.to_string())?;
            count(AdminEvent::TokenRevoked);
            info!(token = %id, kid = %token.kid, outcome = "accepted", "token revoke");
            text(format!(
                "token {id} of {} is revoked; the {} terminals it enrolled keep their keys\n",
                token.kid, token.used
            ))
        }
        CustomerRequest::Approve { code } => {
            let terminal = directory
                .approve(&code, now)
                .await
                .map_err(|e| e.to_string())?;
            count(AdminEvent::Approved);
            info!(%code, kid = %terminal.kid, mid = %terminal.mid, outcome = "accepted", "approve");
            text(format!(
                "{code} is approved: its key may update from now on\n"
            ))
        }
        CustomerRequest::CustomerLimit { kid, limit } => {
            let change = CustomerChange {
                limit: Some(limit),
                ..CustomerChange::default()
            };
            directory
                .change_customer(&kid, change, now)
                .await
                .map_err(|e| e.to_string())?;
            count(AdminEvent::LimitSet);
            let shown = limit.map_or("none".into(), |l| l.to_string());
            info!(%kid, limit = %shown, outcome = "accepted", "customer limit");
            text(format!("customer {kid}: terminal limit {shown}\n"))
        }
        CustomerRequest::CustomerSuspend { kid } => {
            suspend(directory, &kid, true, now).await?;
            count(AdminEvent::Suspended);
            text(format!(
                "customer {kid} is suspended: its keys are refused and its tokens enroll nothing\n"
            ))
        }
        CustomerRequest::CustomerResume { kid } => {
            suspend(directory, &kid, false, now).await?;
            count(AdminEvent::Resumed);
            text(format!("customer {kid} is resumed\n"))
        }
        CustomerRequest::CustomerList => {
            let customers = directory.customers().map_err(|e| e.to_string())?;
            let mut out = format!(
                "{:<32}  {:>9}  {:>7}  {}\n",
                "KID", "TERMINALS", "LIMIT", "SUSPENDED"
            );
            for (kid, c, terminals) in customers {
                let limit = c.limit.map_or("none".into(), |l| l.to_string());
                let suspended = if c.suspended { "yes" } else { "no" };
                out.push_str(&format!(
                    "{:<32}  {:>9}  {:>7}  {}\n",
                    kid.as_str(),
                    terminals,
                    limit,
                    suspended
                ));
            }
            text(out)
        }
    }
}

async fn suspend(
    directory: &Directory,
    kid: &Kid,
    suspended: bool,
    now: u64,
) -> Result<(), String> {
    let change = CustomerChange {
        suspended: Some(suspended),
        ..CustomerChange::default()
    };
    directory
        .change_customer(kid, change, now)
        .await
        .map_err(|e| e.to_string())?;
    let action = if suspended {
        "customer suspend"
    } else {
        "customer resume"
    };
    info!(%kid, outcome = "accepted", "{action}");
    Ok(())
}

/// A duration as `token create --expires` takes it: `90s`, `30m`, `24h`, `7d`, or seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    let value: u64 = number.parse().unwrap_or(0);
    match value.checked_mul(scale) {
        Some(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(format!(
            "duration {text:?} is not valid: use a positive number with s, m, h or d (like 24h or 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
