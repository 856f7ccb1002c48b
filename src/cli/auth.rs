//! `corral token create|list|revoke` and `corral auth can-i|whoami`.

use anyhow::Context;
use corral_api::kinds::{TokenPurpose, TokenSpec};
use corral_client::{BearerToken, DeleteParams, ListParams, WriteParams};
use serde_json::{Value, json};

use super::Ctx;
use super::args::{AuthCommand, CanIArgs, TokenCommand, TokenCreateArgs};
use super::output::Table;

pub(crate) async fn token(ctx: &Ctx, c: TokenCommand) -> anyhow::Result<u8> {
    let kind = ctx.resolve("tokens").await?;
    match c {
        TokenCommand::Create(a) => {
            let token = BearerToken::generate()?;
            let spec = spec_for(&a, &token)?;
            let object = json!({
                "apiVersion": corral_api::API_VERSION,
                "kind": "Token",
                "metadata": {"name": token.id},
                "spec": spec,
            });
            ctx.client.create(&kind, &object, &WriteParams::default()).await?;
            outln!("{}", token.expose())?;
            if a.join {
                let server = ctx.client.server();
                // Over HTTPS the node must know the server's authority before it
                // sends the token anywhere.
                let ca = if server.starts_with("https://") { " --certificate-authority CA.crt" } else { "" };
                eprintln!(
                    "join a node with: corral agent --server {server}{ca} --token {}   (valid until {})",
                    token.expose(),
                    spec.expiration.as_deref().unwrap_or("revoked")
                );
                if !ca.is_empty() {
                    eprintln!(
                        "CA.crt: the server's authority (DATA_DIR/tls/ca.crt with --tls-auto); the node gets a client \
                         certificate for a key it makes itself"
                    );
                }
            }
            Ok(0)
        }
        TokenCommand::List => {
            let list =
                ctx.client.list_all(&kind, None, &ListParams::default(), corral_client::DEFAULT_PAGE_SIZE).await?;
            let mut table = Table::new(["ID", "USER", "PURPOSE", "EXPIRES", "DESCRIPTION"]);
            for o in list.items {
                let spec: TokenSpec =
                    serde_json::from_value(o.rest.get("spec").cloned().unwrap_or_default()).unwrap_or_default();
                table.rows.push(vec![
                    o.metadata.name.clone(),
                    spec.user,
                    format!("{:?}", spec.purpose),
                    spec.expiration.unwrap_or_else(|| "never".into()),
                    spec.description.unwrap_or_default(),
                ]);
            }
            out!("{}", table.render())?;
            Ok(0)
        }
        TokenCommand::Revoke { id } => {
            let id = id.split('.').next().unwrap_or_default().to_string();
            ctx.client.delete(&kind, None, &id, &DeleteParams::default()).await?;
            outln!("token {id} revoked")?;
            Ok(0)
        }
    }
}

fn spec_for(a: &TokenCreateArgs, token: &BearerToken) -> anyhow::Result<TokenSpec> {
    let expiration = parse_ttl(&a.ttl)?.map(|secs| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let (user, purpose) = if a.join {
        (format!("system:bootstrap:{}", token.id), TokenPurpose::Join)
    } else if let Some(sa) = &a.service_account {
        let (ns, name) = sa.split_once('/').context("--service-account: expected NAMESPACE/NAME")?;
        (corral_server::auth::rbac::service_account_user(ns, name), TokenPurpose::Authentication)
    } else if let Some(user) = &a.user {
        (user.clone(), TokenPurpose::Authentication)
    } else {
        anyhow::bail!("say whom the token is for: --user NAME, --service-account NS/NAME, or --join for a node");
    };
    Ok(TokenSpec {
        user,
        groups: a.group.clone(),
        purpose,
        expiration,
        secret_hash: token.secret_hash(),
        description: a.description.clone(),
        bound_to: None,
    })
}

/// `30m`, `24h`, `7d`, `90s`; `0` for never.
fn parse_ttl(s: &str) -> anyhow::Result<Option<i64>> {
    if s == "0" {
        return Ok(None);
    }
    let bad = || anyhow::anyhow!("--ttl {s:?}: expected a number with s, m, h or d (e.g. 24h), or 0 for never");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).filter(|v| *v > 0).map(Some).ok_or_else(bad)
}

pub(crate) async fn auth(ctx: &Ctx, c: AuthCommand) -> anyhow::Result<u8> {
    match c {
        AuthCommand::Whoami => {
            let v: Value = ctx.client.call_json("/auth/whoami", None).await?;
            outln!("user:   {}", v["user"].as_str().unwrap_or_default())?;
            let groups: Vec<&str> = v["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            outln!("groups: {}", groups.join(", "))?;
            Ok(0)
        }
        AuthCommand::CanI(a) => can_i(ctx, a).await,
    }
}

async fn can_i(ctx: &Ctx, a: CanIArgs) -> anyhow::Result<u8> {
    let mut body = json!({"verb": a.verb});
    if a.resource.starts_with('/') {
        body["resource"] = json!(a.resource);
    } else {
        let (kind_name, rest) = match a.resource.split_once('/') {
            Some((k, r)) => (k, Some(r)),
            None => (a.resource.as_str(), None),
        };
        let kind = ctx.resolve(kind_name).await?;
        let (sub, name) = match rest {
            Some(r @ ("status" | "log")) => (Some(r), None),
            Some(name) => (None, Some(name)),
            None => (None, None),
        };
        body["resource"] = json!(match sub {
            Some(s) => format!("{}/{s}", kind.plural),
            None => kind.plural.clone(),
        });
        body["group"] = json!(kind.group);
        if let Some(n) = name {
            body["name"] = json!(n);
        }
        if kind.namespaced && !a.all_namespaces {
            body["namespace"] = json!(a.namespace.as_deref().unwrap_or("default"));
        }
    }
    if let Some(user) = &a.as_user {
        body["user"] = json!(user);
        body["groups"] = json!(a.as_group);
    }
    let v: Value = ctx.client.call_json("/auth/can-i", Some(&body)).await?;
    let allowed = v["allowed"].as_bool().unwrap_or(false);
    outln!("{}", if allowed { "yes" } else { "no" })?;
    if let Some(reason) = v["reason"].as_str() {
        eprintln!("{reason}");
    }
    Ok(if allowed { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttls_read_as_kubeadm_writes_them() {
        assert_eq!(super::parse_ttl("0").unwrap(), None);
        assert_eq!(super::parse_ttl("24h").unwrap(), Some(86_400));
        assert_eq!(super::parse_ttl("30m").unwrap(), Some(1800));
        assert_eq!(super::parse_ttl("7d").unwrap(), Some(604_800));
        for bad in ["", "h", "24", "1y", "-1h", "0h"] {
            assert!(super::parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
