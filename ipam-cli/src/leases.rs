//! `ip renew`, `lease renew --owner`, and the duration flag of `ip allocate --ttl`.

use clap::Subcommand;
use ipam_client::types::{RenewRequest, Renewed};
use ipam_client::Client;

use crate::args::Output;
use crate::commands::emit;
use crate::render;

/// `ipam-cli lease ...`.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Renew every lease an owner holds, in every pool (an agent's heartbeat).
    Renew {
        /// The owner.
        #[arg(long)]
        owner: String,
    },
}

/// A lease length in whole seconds: `45`, `90s`, `10m`, `1h`, `7d` (`0`: permanent). The
/// server checks the range (10 s to 365 d).
pub fn parse_duration(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m, 1h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m, h or d")),
    };
    n.checked_mul(scale)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `ip renew POOL IP`.
pub async fn renew(
    client: &Client,
    out: Output,
    pool: &str,
    ip: &str,
    generation: Option<u64>,
    ttl: Option<u32>,
) -> anyhow::Result<()> {
    let req = RenewRequest {
        generation,
        ttl_seconds: ttl,
    };
    let a = client.renew(pool, ip, &req).await?;
    emit(out, &a, || {
        format!("renewed\n{}", render::allocation_details(&a))
    })
}

/// `lease ...`.
pub async fn lease(client: &Client, out: Output, cmd: LeaseCommand) -> anyhow::Result<()> {
    match cmd {
        LeaseCommand::Renew { owner } => {
            let renewed = Renewed {
                renewed: client.renew_owner(&owner).await?,
            };
            emit(out, &renewed, || {
                if renewed.renewed.is_empty() {
                    format!("{owner} holds no lease\n")
                } else {
                    render::allocation_table(&renewed.renewed)
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_parse_to_seconds() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999d").is_err());
    }
}
