//! What a hook receives: Switchyard's JSON (the notice as is), or a Slack
//! incoming-webhook message; and the body's HMAC-SHA256 signature.

use serde_json::json;

use super::Notice;
use crate::config::WebhookFormat;

/// The body for a hook of `format`.
pub fn body(notice: &Notice, format: WebhookFormat) -> Vec<u8> {
    match format {
        WebhookFormat::Json => serde_json::to_vec(notice).unwrap_or_default(),
        WebhookFormat::Slack => serde_json::to_vec(&slack(notice)).unwrap_or_default(),
    }
}

fn slack(n: &Notice) -> serde_json::Value {
    let headline = match n.event {
        "rolled_back" => format!(":rotating_light: *Rolled back* on {} ({}% → 0%)", n.gateway, n.from),
        "promoted" => format!(":white_check_mark: *Promoted* on {}: new serves everything", n.gateway),
        "paused" => format!(":double_vertical_bar: *Paused* at {}% on {}", n.to, n.gateway),
        "resumed" => format!(":arrow_forward: *Resumed* at {}% on {}", n.to, n.gateway),
        "guard_failed" => format!(":warning: *The guard failed a check* on {} at {}%", n.gateway, n.from),
        "gate_waiting" => format!(":hourglass: *Waiting on a gate* on {} before {}%", n.gateway, n.to),
        _ => format!("*Rollout {}% → {}%* on {} ({})", n.from, n.to, n.gateway, n.phase),
    };
    let text = format!("{headline}\nby {}: {}", n.who, n.why);
    json!({
        "text": text,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("<{}|status> · <{}|diff report>", n.links.status, n.links.report) }
            ] }
        ]
    })
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`): what a receiver compares,
/// in constant time, against `x-switchyard-signature`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
