//! The OpenAPI document lists exactly the routes the router serves, and each listed route is
//! answered by its handler (not by the "no such route" fallback or a 405).

mod common;

use std::collections::BTreeSet;

#[tokio::test]
async fn the_document_matches_the_router() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = tm_provider::http::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);

    let dir = tempfile::tempdir().unwrap();
    let s = common::stack(dir.path()).await;
    for (method, path) in &documented {
        let url = format!("{}{}", s.provider, path.replace("{token}", "0123"));
        let request = match method.as_str() {
            "get" => s.http.get(&url),
            _ => s.http.post(&url).body("x"),
        };
        let r = request.send().await.unwrap();
        assert_ne!(r.status(), 405, "{method} {path}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed"
        );
    }
    let r = s
        .http
        .get(format!("{}/nope", s.provider))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("no such route"));
    s.stop().await;
}
