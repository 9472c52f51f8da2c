//! A router that knows what it serves. Every feature registers its routes through [`Routes`],
//! which adds each one to the axum router and to a list of (method, path) in the same call; the
//! provider's whole list ([`crate::app::Assembly::routes`]) is therefore read from the router
//! itself, never from a copy kept by hand, and the OpenAPI document (`provider/openapi.json`)
//! is checked against it by a test.
//!
//! [`Routes::map_router`] is for what is not a route (state, layers, the fallback): a route
//! added through it would be served without being listed.

use std::fmt;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{get, post};

/// An HTTP method the provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `GET` (axum answers `HEAD` with it).
    Get,
    /// `POST`.
    Post,
}

impl Method {
    /// The lower-case name, as OpenAPI spells operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An axum router with the list of what it serves, in registration order.
#[derive(Debug)]
pub struct Routes<S = ()> {
    router: Router<S>,
    served: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    /// Serves `GET path` with `handler`.
    pub fn get<H, T>(mut self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, get(handler));
        self.served.push((Method::Get, path));
        self
    }

    /// Serves `POST path` with `handler`.
    pub fn post<H, T>(mut self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, post(handler));
        self.served.push((Method::Post, path));
        self
    }

    /// Changes the router without changing its routes: state, layers, the fallback.
    pub fn map_router<S2>(self, f: impl FnOnce(Router<S>) -> Router<S2>) -> Routes<S2> {
        Routes {
            router: f(self.router),
            served: self.served,
        }
    }

    /// Both sets of routes (axum refuses overlapping ones).
    pub fn merge(mut self, other: Self) -> Self {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// What is served, in registration order.
    pub fn served(&self) -> &[(Method, &'static str)] {
        &self.served
    }

    /// The axum router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_list_is_what_the_router_serves() {
        let routes = Routes::new()
            .get("/a", || async { "a" })
            .post("/a", || async { "posted" })
            .merge(Routes::new().get("/b/{id}", || async { "b" }))
            .map_router(|r| r.fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "none") }));
        assert_eq!(
            routes.served(),
            [
                (Method::Get, "/a"),
                (Method::Post, "/a"),
                (Method::Get, "/b/{id}")
            ]
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = routes.into_router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        crate::http::tls::install_crypto_provider();
        let http = reqwest::Client::new();
        let body = |r: reqwest::Response| async move { r.text().await.unwrap() };
        let base = format!("http://{addr}");
        assert_eq!(
            body(http.get(format!("{base}/a")).send().await.unwrap()).await,
            "a"
        );
        assert_eq!(
            body(http.post(format!("{base}/a")).send().await.unwrap()).await,
            "posted"
        );
        assert_eq!(
            body(http.get(format!("{base}/b/7")).send().await.unwrap()).await,
            "b"
        );
        assert_eq!(
            body(http.get(format!("{base}/c")).send().await.unwrap()).await,
            "none"
        );
    }
}
