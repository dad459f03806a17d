//! The second-round `ip-pool` subcommands: update, add-range, remove-range, freeze,
//! unfreeze, next-free.

use ipam_client::types::{AddRangeRequest, GatewayField, NextFree, UpdatePoolRequest};
use ipam_client::Client;

use crate::args::{Output, PoolCommand};
use crate::commands::emit;
use crate::render;

fn frozen(value: bool) -> UpdatePoolRequest {
    UpdatePoolRequest {
        frozen: Some(value),
        ..UpdatePoolRequest::default()
    }
}

/// Runs one of the second-round pool commands; `commands::pool` runs the others.
pub async fn run(client: &Client, out: Output, cmd: PoolCommand) -> anyhow::Result<()> {
    let pool = match cmd {
        PoolCommand::Update(args) => {
            client
                .update_pool(&args.name, &args.request(), args.revision)
                .await?
        }
        PoolCommand::AddRange {
            name,
            cidr,
            gateway,
            no_gateway,
        } => {
            let gateway = match (gateway, no_gateway) {
                (Some(g), _) => GatewayField::Addr(g),
                (None, true) => GatewayField::None,
                (None, false) => GatewayField::Default,
            };
            client
                .add_range(&name, &AddRangeRequest { cidr, gateway })
                .await?
        }
        PoolCommand::RemoveRange { name, cidr } => client.remove_range(&name, &cidr).await?,
        PoolCommand::Freeze { name } => client.update_pool(&name, &frozen(true), None).await?,
        PoolCommand::Unfreeze { name } => client.update_pool(&name, &frozen(false), None).await?,
        PoolCommand::NextFree { name, count } => {
            let list = NextFree {
                addresses: client.next_free(&name, count).await?,
            };
            return emit(out, &list, || {
                if list.addresses.is_empty() {
                    format!("pool {name} has no free address to hand out\n")
                } else {
                    list.addresses.iter().map(|a| format!("{a}\n")).collect()
                }
            });
        }
        other => anyhow::bail!("internal: {other:?} is not a second-round pool command"),
    };
    emit(out, &pool, || render::pool_details(&pool))
}
