//! Reading a whole list page by page (`limit` and `continue`), as kubectl and
//! client-go do: the server never builds one huge answer, and a client never holds
//! one huge body.

use std::future::Future;

use crate::client::{ListMeta, ObjectList};
use crate::error::{Error, Result};
use crate::params::ListParams;

/// The page size kubectl (`--chunk-size`) and client-go's pager use.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// How many times a paged list is read again from its first page after its snapshot
/// was compacted away between two pages (410 `Expired`) before the error is returned.
pub const MAX_LIST_RESTARTS: u32 = 3;

/// Why one pass over the pages stopped.
struct Interrupted {
    error: Error,
    /// Whether the failed request carried a `continue` token (a later page).
    continued: bool,
}

/// Whether a pass that stopped on `error` is to be started again from the first page,
/// after `restarts` restarts so far: only when a later page answered 410 (the
/// snapshot its token names is compacted), and only a bounded number of times. A 410
/// on the first page, or any other error, is the caller's.
fn restart_after(error: &Error, continued: bool, restarts: u32) -> bool {
    continued && error.is_gone() && restarts < MAX_LIST_RESTARTS
}

/// Reads the list `params` selects in pages of `page_size` objects (0: in one
/// request), fetching each page with `fetch`; restarts from the first page when the
/// snapshot expires between pages (at most [`MAX_LIST_RESTARTS`] times).
pub(crate) async fn read_all<K, F, Fut>(params: &ListParams, page_size: u32, mut fetch: F) -> Result<ObjectList<K>>
where
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<K>>>,
{
    let first = ListParams { limit: (page_size > 0).then_some(page_size), continue_token: None, ..params.clone() };
    let mut restarts = 0;
    loop {
        match read_once(&first, &mut fetch).await {
            Ok(list) => return Ok(list),
            Err(Interrupted { error, continued }) if restart_after(&error, continued, restarts) => {
                restarts += 1;
            }
            Err(Interrupted { error, continued }) if continued && error.is_gone() => {
                return Err(expired_too_often(error, restarts + 1, page_size));
            }
            Err(Interrupted { error, .. }) => return Err(error),
        }
    }
}

/// One pass: the first page, then each page its predecessor's token names, until a
/// page comes without one.
async fn read_once<K, F, Fut>(first: &ListParams, fetch: &mut F) -> Result<ObjectList<K>, Interrupted>
where
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<K>>>,
{
    let mut page = fetch(first.clone()).await.map_err(|error| Interrupted { error, continued: false })?;
    let mut items = std::mem::take(&mut page.items);
    let revision = page.metadata.resource_version.clone();
    let mut pages = 1u64;
    while let Some(token) = page.continue_token().map(str::to_string) {
        let next = ListParams { continue_token: Some(token.clone()), ..first.clone() };
        page = fetch(next).await.map_err(|error| Interrupted { error, continued: true })?;
        pages += 1;
        let bad = |message: String| Interrupted {
            error: Error::Decode { what: format!("page {pages} of a list"), message },
            continued: true,
        };
        if page.metadata.resource_version != revision {
            return Err(bad(format!(
                "it is at resourceVersion {:?} but the list began at {revision:?}; the pages of one list \
                 must share one revision",
                page.metadata.resource_version
            )));
        }
        if page.continue_token() == Some(token.as_str()) {
            return Err(bad(format!(
                "it names itself as the next page (continue={token:?}); the list would never end"
            )));
        }
        items.append(&mut page.items);
    }
    Ok(ObjectList {
        api_version: page.api_version,
        kind: page.kind,
        metadata: ListMeta { resource_version: revision, ..ListMeta::default() },
        items,
    })
}

/// The 410 of the last pass, saying what was tried and what to do instead.
fn expired_too_often(error: Error, passes: u32, page_size: u32) -> Error {
    match error {
        Error::Api(mut status) => {
            status.message = format!(
                "the list expired {passes} times while being read in pages of {page_size}: the server compacts its \
                 history faster than the pages are read ({}); read it in larger pages, or in one request (page \
                 size 0)",
                status.message
            );
            Error::Api(status)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::error::Status;

    /// A fake server holding `names` at revision `rv`, answering pages whose token is
    /// the index of the next item; `expire` says, for the n-th request (from 0),
    /// whether it answers 410 instead.
    struct Fake {
        names: Vec<String>,
        rv: String,
        expire: Box<dyn Fn(usize) -> bool>,
        requests: RefCell<Vec<ListParams>>,
    }

    impl Fake {
        fn new(n: usize) -> Self {
            Fake {
                names: (0..n).map(|i| format!("cm-{i:04}")).collect(),
                rv: "42".into(),
                expire: Box::new(|_| false),
                requests: RefCell::default(),
            }
        }

        async fn page(&self, p: ListParams) -> Result<ObjectList<String>> {
            let n = self.requests.borrow().len();
            self.requests.borrow_mut().push(p.clone());
            if p.continue_token.is_some() && (self.expire)(n) {
                return Err(gone());
            }
            let start: usize = p.continue_token.as_deref().map_or(0, |t| t.parse().unwrap());
            let limit = p.limit.filter(|l| *l > 0).map_or(usize::MAX, |l| l as usize);
            let end = start.saturating_add(limit).min(self.names.len());
            let more = end < self.names.len();
            Ok(ObjectList {
                api_version: "corral.dev/v1".into(),
                kind: "ConfigMapList".into(),
                metadata: ListMeta {
                    resource_version: Some(self.rv.clone()),
                    continue_token: more.then(|| end.to_string()),
                    remaining_item_count: more.then(|| (self.names.len() - end) as u64),
                },
                items: self.names[start..end].to_vec(),
            })
        }
    }

    fn gone() -> Error {
        Error::Api(Box::new(Status {
            code: 410,
            reason: "Expired".into(),
            message: "the list's snapshot is compacted; restart the list".into(),
            details: None,
        }))
    }

    #[tokio::test]
    async fn pages_are_joined_in_order_with_the_selectors_repeated() {
        let fake = Fake::new(1_050);
        let params = ListParams::default().labels("app=web").fields("spec.x=y").continue_token("ignored");
        let list = read_all(&params, 100, |p| fake.page(p)).await.unwrap();
        assert_eq!(list.items, fake.names);
        assert_eq!(list.metadata, ListMeta { resource_version: Some("42".into()), ..ListMeta::default() });
        assert_eq!(list.kind, "ConfigMapList");
        let requests = fake.requests.borrow();
        assert_eq!(requests.len(), 11);
        assert_eq!(requests[0].continue_token, None, "the caller's token is not where a list starts");
        for (i, r) in requests.iter().enumerate() {
            assert_eq!(r.limit, Some(100));
            assert_eq!(r.label_selector.as_deref(), Some("app=web"));
            assert_eq!(r.field_selector.as_deref(), Some("spec.x=y"));
            if i > 0 {
                assert_eq!(r.continue_token, Some((i * 100).to_string()));
            }
        }
    }

    #[tokio::test]
    async fn page_size_zero_is_one_request_without_a_limit() {
        let fake = Fake::new(1_200);
        let list = read_all(&ListParams::default(), 0, |p| fake.page(p)).await.unwrap();
        assert_eq!(list.items.len(), 1_200);
        let requests = fake.requests.borrow();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].limit, None);
    }

    #[tokio::test]
    async fn an_expired_token_restarts_the_list_from_its_first_page() {
        let mut fake = Fake::new(250);
        // The third request (the second page) expires once.
        fake.expire = Box::new(|n| n == 2);
        let list = read_all(&ListParams::default(), 100, |p| fake.page(p)).await.unwrap();
        assert_eq!(list.items, fake.names, "each object once, none from the abandoned pass");
        let tokens: Vec<Option<String>> = fake.requests.borrow().iter().map(|r| r.continue_token.clone()).collect();
        assert_eq!(
            tokens,
            [None, Some("100".into()), Some("200".into()), None, Some("100".into()), Some("200".into())]
        );
    }

    #[tokio::test]
    async fn restarts_are_bounded_and_the_error_says_what_to_do() {
        let mut fake = Fake::new(250);
        fake.expire = Box::new(|_| true);
        let e = read_all(&ListParams::default(), 100, |p| fake.page(p)).await.unwrap_err();
        assert!(e.is_gone(), "{e}");
        assert_eq!(e.reason(), Some("Expired"));
        assert!(e.to_string().contains("expired 4 times") && e.to_string().contains("larger pages"), "{e}");
        assert_eq!(fake.requests.borrow().len(), 2 * (MAX_LIST_RESTARTS as usize + 1));
    }

    #[test]
    fn only_a_later_page_answering_410_restarts() {
        assert!(restart_after(&gone(), true, 0));
        assert!(restart_after(&gone(), true, MAX_LIST_RESTARTS - 1));
        assert!(!restart_after(&gone(), true, MAX_LIST_RESTARTS));
        assert!(!restart_after(&gone(), false, 0), "a first page has no snapshot to lose");
        let conflict = Error::Api(Box::new(Status { code: 409, reason: "Conflict".into(), ..Status::default() }));
        assert!(!restart_after(&conflict, true, 0));
    }

    #[tokio::test]
    async fn pages_at_different_revisions_are_refused() {
        let fake = Fake::new(250);
        let e = read_all(&ListParams::default(), 100, |p| {
            let second = !fake.requests.borrow().is_empty();
            let page = fake.page(p);
            async move {
                let mut page = page.await?;
                if second {
                    page.metadata.resource_version = Some("43".into());
                }
                Ok(page)
            }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e}");
        assert!(e.to_string().contains("share one revision"), "{e}");
    }

    #[tokio::test]
    async fn a_page_naming_itself_next_is_refused() {
        let e = read_all(&ListParams::default(), 10, |p| {
            std::future::ready(Ok(ObjectList::<String> {
                api_version: String::new(),
                kind: String::new(),
                metadata: ListMeta { continue_token: Some("same".into()), ..ListMeta::default() },
                items: vec![p.continue_token.unwrap_or_default()],
            }))
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("never end"), "{e}");
    }
}
