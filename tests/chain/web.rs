//! A blocking HTTP client for the test's thread: reqwest on a small runtime of its own, so
//! the story reads as plain sequential steps. It trusts the chain's CA, like the gateway and
//! the emulator. Any non-2xx answer fails the test with the URL.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tm_testkit::net::form_encode;

#[derive(Debug)]
pub struct Web {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Web {
    /// A client trusting the CA certificate in `ca_file` (besides the system roots).
    pub fn new(ca_file: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_file).unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self { rt, client }
    }

    /// Whether `url` answers a GET with 2xx; otherwise what it answered.
    pub fn answers(&self, url: &str) -> Result<(), String> {
        match self
            .rt
            .block_on(async { self.client.get(url).send().await })
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn get_json(&self, url: &str) -> Value {
        self.rt.block_on(async {
            let r = self.client.get(url).send().await.unwrap();
            assert!(r.status().is_success(), "GET {url}: {}", r.status());
            r.json().await.unwrap()
        })
    }

    pub fn post_json(&self, url: &str, body: &Value) -> Value {
        self.rt.block_on(async {
            let r = self.client.post(url).json(body).send().await.unwrap();
            assert!(r.status().is_success(), "POST {url}: {}", r.status());
            r.json().await.unwrap()
        })
    }

    /// POSTs an HTML form; returns the page.
    pub fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> String {
        let (status, page) = self.post_form_status(url, fields);
        assert!((200..300).contains(&status), "POST {url}: {status}\n{page}");
        page
    }

    /// POSTs an HTML form; returns the status and the page, whatever the status.
    pub fn post_form_status(&self, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.rt.block_on(async {
            let r = self
                .client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    /// GETs `url` with `headers` (a JSON object of name -> value) and returns the body.
    pub fn get_bytes(&self, url: &str, headers: &Value) -> Vec<u8> {
        self.rt.block_on(async {
            let mut request = self.client.get(url);
            for (name, value) in headers.as_object().into_iter().flatten() {
                request = request.header(name, value.as_str().unwrap_or_default());
            }
            let r = request.send().await.unwrap();
            assert!(r.status().is_success(), "GET {url}: {}", r.status());
            r.bytes().await.unwrap().to_vec()
        })
    }
}
