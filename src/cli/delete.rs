//! `corral delete`: by kind and names, or by manifest.

use corral_api::KindInfo;

use super::apply::{documents_with_problems, prepare, print_problems};
use super::args::DeleteArgs;
use super::{Ctx, kind_word};
use corral_client::{DEFAULT_PAGE_SIZE, DeleteParams, Deleted, ListParams};

pub(crate) async fn run(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<u8> {
    let targets: Vec<(KindInfo, Option<String>, String)> = if args.files.is_empty() {
        let Some((kind, names)) = args.target.split_first() else {
            anyhow::bail!("give a kind and names (`corral delete configmap web`) or -f PATH");
        };
        match (names.is_empty(), args.all) {
            (true, false) => anyhow::bail!(
                "give the names of the {kind} objects to delete, e.g. `corral delete {kind} NAME`, or --all for every one"
            ),
            (false, true) => anyhow::bail!("give names or --all, not both"),
            _ => {}
        }
        let kind = ctx.resolve(kind).await?;
        let ns = kind.namespaced.then(|| args.ns.or_default().to_string());
        let names = if args.all {
            let list = ctx.client.list_all(&kind, ns.as_deref(), &ListParams::default(), DEFAULT_PAGE_SIZE).await?;
            if list.items.is_empty() {
                let place = ns.as_deref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
                eprintln!("No {} found{place}; nothing to delete.", kind.plural);
            }
            list.items.into_iter().map(|o| o.metadata.name).collect()
        } else {
            names.to_vec()
        };
        names.into_iter().map(|n| (kind.clone(), ns.clone(), n)).collect()
    } else {
        let (prepared, problems) = prepare(ctx, &args.files, &args.ns).await?;
        if !problems.is_empty() {
            let total = prepared.len() + documents_with_problems(&problems);
            print_problems(problems, total, "nothing was deleted");
            return Ok(1);
        }
        // Reverse order, and namespaces last: objects go before what holds them.
        let mut targets: Vec<_> = prepared.into_iter().rev().map(|p| (p.kind, p.namespace, p.name)).collect();
        targets.sort_by_key(|(kind, _, _)| super::apply::is_namespace(kind));
        targets
    };
    let mut failed = false;
    for (kind, ns, name) in &targets {
        let short = format!("{}/{name}", kind_word(kind));
        let deleted = ctx
            .client
            .delete(
                kind,
                ns.as_deref(),
                name,
                &DeleteParams { propagation: Some(args.cascade.policy()), ..Default::default() },
            )
            .await;
        match deleted {
            // A closed stdout must not stop a delete halfway: the results are ignored.
            Ok(Deleted::Gone(_)) => {
                let _ = outln!("{short} deleted");
            }
            Ok(Deleted::Pending(o)) => {
                let finalizers = o.metadata.finalizers.join(", ");
                let _ = outln!("{short} deletion requested (finalizers: {finalizers})");
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) if e.is_not_found() => {
                failed = true;
                let place = ns.as_deref().map(|ns| format!(" in namespace {ns:?}")).unwrap_or_default();
                eprintln!("error: {short} not found{place}; nothing to delete");
            }
            Err(e @ corral_client::Error::Api(_)) => {
                failed = true;
                eprintln!("error: {short}: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u8::from(failed))
}
