//! ELBv2 (query protocol): `DescribeTargetHealth` answered from the model's tasks; listener
//! and rule changes forwarded to moto and remembered, to know which target groups a listener
//! forwards to (the others are never health-checked).

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::Shared;
use crate::http::{Answer, forward};

/// The decoded form of an ELBv2 request, or `None` for anything else.
pub(crate) fn form(headers: &[(String, String)], body: &[u8]) -> Option<Vec<(String, String)>> {
    let is_form = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        return None;
    }
    let pairs = decode(std::str::from_utf8(body).ok()?);
    let v2 = pairs
        .iter()
        .any(|(k, v)| k == "Version" && v == "2015-12-01");
    v2.then_some(pairs)
}

fn decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(c) => {
                        out.push(c);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The target groups named in a request's actions (`DefaultActions.…` or `Actions.…`), or
/// `None` when it carries no actions.
fn action_groups(form: &[(String, String)]) -> Option<BTreeSet<String>> {
    let mut any = false;
    let mut groups = BTreeSet::new();
    for (k, v) in form {
        if k.starts_with("DefaultActions.") || k.starts_with("Actions.") {
            any = true;
            if k.ends_with("TargetGroupArn") {
                groups.insert(v.clone());
            }
        }
    }
    any.then_some(groups)
}

/// The text of the first `<tag>…</tag>` in an XML answer.
fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{tag}>"))? + start;
    Some(s[start..end].to_owned())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) async fn call(
    shared: &Shared,
    form: Vec<(String, String)>,
    method: &hyper::Method,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Answer {
    let action = param(&form, "Action").unwrap_or("").to_owned();
    shared.state().admit(&action);
    let answer = forward(shared, method, path, headers, body).await;
    if !answer.status.is_success() {
        return answer;
    }
    match action.as_str() {
        "DescribeTargetHealth" => {
            let tg = param(&form, "TargetGroupArn").unwrap_or("").to_owned();
            let only: Vec<&str> = form
                .iter()
                .filter(|(k, _)| k.starts_with("Targets.member.") && k.ends_with(".Id"))
                .map(|(_, v)| v.as_str())
                .collect();
            let s = shared.state();
            let members: String = crate::ecs::target_health(&s, &tg)
                .into_iter()
                .filter(|(ip, ..)| only.is_empty() || only.contains(&ip.as_str()))
                .map(|(ip, port, state, reason, desc)| {
                    let mut th = format!("<State>{state}</State>");
                    if let Some(r) = reason {
                        th.push_str(&format!("<Reason>{r}</Reason>"));
                    }
                    if let Some(d) = desc {
                        th.push_str(&format!("<Description>{}</Description>", escape(d)));
                    }
                    format!(
                        "<member><HealthCheckPort>{port}</HealthCheckPort><Target><Id>{ip}</Id>\
                         <Port>{port}</Port></Target><TargetHealth>{th}</TargetHealth></member>"
                    )
                })
                .collect();
            Answer::xml(
                answer.status,
                format!(
                    "<DescribeTargetHealthResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
                     <DescribeTargetHealthResult><TargetHealthDescriptions>{members}</TargetHealthDescriptions>\
                     </DescribeTargetHealthResult><ResponseMetadata><RequestId>model</RequestId></ResponseMetadata>\
                     </DescribeTargetHealthResponse>"
                ),
            )
        }
        "CreateListener" | "ModifyListener" | "CreateRule" | "ModifyRule" => {
            let arn_tag = if action.ends_with("Listener") {
                "ListenerArn"
            } else {
                "RuleArn"
            };
            let arn = param(&form, arn_tag)
                .map(str::to_owned)
                .or_else(|| xml_text(&answer.body, arn_tag));
            if let (Some(arn), Some(groups)) = (arn, action_groups(&form)) {
                shared.state().routes.insert(arn, groups);
            }
            answer
        }
        "DeleteListener" | "DeleteRule" => {
            let arn_tag = if action == "DeleteListener" {
                "ListenerArn"
            } else {
                "RuleArn"
            };
            if let Some(arn) = param(&form, arn_tag) {
                let mut s = shared.state();
                s.routes.remove(arn);
                if arn_tag == "ListenerArn" {
                    // A listener's rules go with it.
                    let prefix = arn.replace(":listener/", ":listener-rule/");
                    s.routes.retain(|k, _| !k.starts_with(&prefix));
                }
            }
            answer
        }
        _ => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_name_their_groups() {
        let f = decode(
            "Action=ModifyListener&Version=2015-12-01&ListenerArn=arn%3Aaws%3Alistener%2Fa\
             &DefaultActions.member.1.Type=forward\
             &DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn=tg%2Fblue\
             &DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn=tg%2Fgreen",
        );
        assert_eq!(param(&f, "ListenerArn"), Some("arn:aws:listener/a"));
        let g = action_groups(&f).unwrap();
        assert_eq!(g.into_iter().collect::<Vec<_>>(), ["tg/blue", "tg/green"]);
        assert!(action_groups(&decode("Action=ModifyListener&Port=80")).is_none());
        assert_eq!(unescape("a%2"), "a%2");
    }
}
