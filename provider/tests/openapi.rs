//! The OpenAPI document (`provider/openapi.json`) lists exactly the routes the provider serves,
//! read from the assembled router itself (`Assembly::routes`: Portal, enrollment, gateway
//! ingest and command poll, attachment downloads, operations), declares every path parameter,
//! and each listed route is answered by its handler (not by the "no such route" fallback or a
//! 405) with a status the document lists for that operation.

use std::collections::BTreeSet;

use serde_json::Value;

const OPS_TOKEN: &str = "ops-token-for-the-openapi-check";

fn document() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, item: &'a Value) -> &'a Value {
    match item.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => item,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op));
            }
        }
    }
    out
}

/// The `{name}` segments of a path template.
fn template_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

async fn assemble(dir: &std::path::Path) -> tm_provider::app::Assembly {
    std::fs::write(dir.join("ops-token"), OPS_TOKEN).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:1\"\npublic_url = \"http://127.0.0.1:1\"\nkey_file = \"{}\"\n\
         {}[attachments]\nkey_file = \"{}\"\n[ops]\ntoken_file = \"{}\"\n",
        dir.join("provider.key").display(),
        tm_testkit::backend::TestStore::in_dir(dir).setting(),
        dir.join("attachments.key").display(),
        dir.join("ops-token").display()
    );
    let file: tm_provider::config::ConfigFile = toml::from_str(&text).unwrap();
    tm_provider::app::assemble(tm_provider::config::Config::try_from(file).unwrap())
        .await
        .unwrap()
}

/// Every `$ref` string anywhere under `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn every_path_parameter_is_declared_and_every_reference_resolves() {
    let doc = document();
    let mut refs = Vec::new();
    references(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(
            r.starts_with("#/") && doc.pointer(&r[1..]).is_some(),
            "dangling {r}"
        );
    }
    for (method, path, op) in operations(&doc) {
        let item = &doc["paths"][&path];
        let declared: BTreeSet<String> = [item.get("parameters"), op.get("parameters")]
            .into_iter()
            .flatten()
            .flat_map(|list| list.as_array().unwrap())
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let in_template: BTreeSet<String> = template_parameters(&path)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for response in responses.values() {
            let response = resolve(&doc, response);
            assert!(
                response["description"].is_string(),
                "{method} {path}: a response without a description"
            );
            for header in response
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|h| h.values())
            {
                resolve(&doc, header);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_what_the_router_serves() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let assembly = assemble(dir.path()).await;
    let routes = assembly.routes();
    let served: BTreeSet<(String, String)> = routes
        .served()
        .iter()
        .map(|(m, p)| (m.as_str().to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        served.len(),
        routes.served().len(),
        "a route is registered twice"
    );
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "served but not in openapi.json: {undocumented:?}; in openapi.json but not served: {not_served:?}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tm_provider::http::serve(
        listener,
        routes.into_router(),
        stop.clone(),
    ));
    tm_provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let mut url = base.clone() + &path;
        for name in template_parameters(&path) {
            url = url.replace(&format!("{{{name}}}"), "0123");
        }
        let request = match method.as_str() {
            "get" => http.get(&url),
            _ => {
                let content_type = op["requestBody"]["content"]
                    .as_object()
                    .and_then(|c| c.keys().next().cloned())
                    .unwrap_or_else(|| "application/octet-stream".into());
                http.post(&url)
                    .header("content-type", content_type)
                    .body("x")
            }
        };
        let r = request.bearer_auth(OPS_TOKEN).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == 405 || body.contains("no such route") {
            problems.push(format!("{method} {path} is not routed ({status})"));
        } else if op["responses"].get(status.to_string()).is_none()
            && op["responses"].get("default").is_none()
        {
            problems.push(format!(
                "{method} {path} answered {status}, which openapi.json does not list: {body}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let r = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no such route"));
    stop.cancel();
}
