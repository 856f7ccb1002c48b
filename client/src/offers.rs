//! Accepting and declining offers: how a framework places tasks.

use corral_api::kinds::Task;
use corral_api::kinds::framework::{OfferAccept, OfferDecline};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Client, Result};

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct TaskList<T> {
    items: Vec<T>,
}

impl Client {
    /// Accepts offer `offer` for `accept.framework`: creates `accept.tasks` bound to
    /// the offer's node (all of them, or none) and consumes the offer. Each task's
    /// ports need a `hostPort` from the offer's ports.
    ///
    /// Returns the tasks as created.
    ///
    /// # Errors
    /// 409 `Conflict` when the offer no longer fits: consumed, declined, rescinded,
    /// expired, or the node no longer has the resources ([`crate::Error::is_conflict`]);
    /// 403 when the offer was made to another framework; 422 naming the task field
    /// that is invalid.
    pub async fn accept_offer(&self, offer: &str, accept: &OfferAccept) -> Result<Vec<Task>> {
        self.accept_offer_as(offer, accept).await
    }

    /// As [`Client::accept_offer`], each created task read as a `T`: a framework that
    /// launches hundreds at once and needs only their names and revisions reads them
    /// as [`corral_api::PartialObject`], and the rest is skipped, never built.
    ///
    /// # Errors
    /// As [`Client::accept_offer`].
    pub async fn accept_offer_as<T: DeserializeOwned>(&self, offer: &str, accept: &OfferAccept) -> Result<Vec<T>> {
        // Encoded straight to bytes: an accept may carry hundreds of tasks.
        let body = crate::client::json_body(accept)?;
        let path = offer_path(offer, "accept");
        let (_, list): (_, TaskList<T>) =
            self.call(http::Method::POST, path.clone(), Some(("application/json", body)), &path).await?;
        Ok(list.items)
    }

    /// Declines offer `offer` for `decline.framework`, refusing its node for
    /// `decline.refuse_seconds` (default 5).
    ///
    /// # Errors
    /// As [`Client::accept_offer`].
    pub async fn decline_offer(&self, offer: &str, decline: &OfferDecline) -> Result<()> {
        let body = serde_json::to_value(decline).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        let _: serde_json::Value = self.call_json(&offer_path(offer, "decline"), Some(&body)).await?;
        Ok(())
    }
}

fn offer_path(offer: &str, what: &str) -> String {
    format!("/apis/{}/offers/{offer}/{what}", corral_api::API_VERSION)
}
