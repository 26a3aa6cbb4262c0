//! TLS on both sides: the listener (SNI, ALPN, reload, metrics) and
//! `https://` backends (private CA, mTLS, ALPN h2, session resumption),
//! against real servers on loopback with a CA made in the test.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::tls::{Issued, TestCa};
use support::*;
use switchyard::gateway::Gateway;
use tokio::net::TcpStream;

/// One request over a fresh TLS connection to the gateway's TLS listener,
/// asking for `sni`; returns the status, what the backend said, the
/// certificate the gateway showed and the negotiated ALPN.
struct TlsAnswer {
    status: u16,
    body: Bytes,
    served_cert: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
}

async fn handshake(g: &Gateway, ca: &TestCa, sni: &str, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client(alpn)));
    let tcp = TcpStream::connect(g.tls_addr.unwrap()).await.unwrap();
    connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .unwrap()
}

async fn get_over(stream: tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> TlsAnswer {
    let served_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let alpn = stream.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let req = Request::get(path)
        .header("host", "shop.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = format!("https://shop.example{path}").parse().unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    TlsAnswer {
        status,
        body,
        served_cert,
        alpn,
    }
}

/// A gateway started from a config file in `dir` (so reloads re-read it),
/// with a TLS listener serving `cert`; the file's path and text.
fn tls_gateway_from_file(
    dir: &std::path::Path,
    old: &Origin,
    new: &Origin,
    cert: &Issued,
) -> (Gateway, std::path::PathBuf, String) {
    let config = dir.join("switchyard.yaml");
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\n{}{}",
        backends(old, new),
        tls_section(&[cert])
    );
    std::fs::write(&config, &yaml).unwrap();
    (gateway_from_file(&config), config, yaml)
}

fn tls_section(certs: &[&Issued]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert_file: \"{}\", key_file: \"{}\" }}",
                c.cert_file.display(),
                c.key_file.display()
            )
        })
        .collect();
    format!(
        "tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{}]\n",
        list.join(", ")
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_clients_get_h2_or_http1() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.example"]);
    let api = ca.issue("api", &["api.example", "*.api.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!("{}{}", backends(&old, &new), tls_section(&[&shop, &api])));

    let a = get_over(handshake(&g, &ca, "api.example", &[b"h2", b"http/1.1"]).await, "/x").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.served_cert, api.der, "SNI api.example gets api's certificate");
    assert_eq!(a.alpn.as_deref(), Some(&b"h2"[..]), "h2 is offered by ALPN");
    let w = get_over(handshake(&g, &ca, "eu.api.example", &[b"http/1.1"]).await, "/x").await;
    assert_eq!(w.served_cert, api.der, "a wildcard covers one label");
    assert_eq!(w.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let s = get_over(handshake(&g, &ca, "shop.example", &[]).await, "/x").await;
    assert_eq!(s.served_cert, shop.der);
    let unknown = get_over(handshake(&g, &ca, "shop.example", &[b"http/1.1"]).await, "/y").await;
    assert_eq!(unknown.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains("\"path\":\"/x\""));

    let seen = old.seen().into_iter().chain(new.seen()).collect::<Vec<_>>();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.headers["x-forwarded-proto"], "https", "{:?}", s.headers);
    }
    assert_eq!(
        metric(&g, "switchyard_tls_handshakes_total", &[("protocol", "h2")]),
        1.0
    );
    assert_eq!(
        metric(&g, "switchyard_tls_handshakes_total", &[("protocol", "http/1.1")]),
        2.0
    );
    stop(g).await;
}

#[tokio::test]
async fn a_client_without_sni_gets_the_first_certificate() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.example", "127.0.0.1"]);
    let api = ca.issue("api", &["api.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!("{}{}", backends(&old, &new), tls_section(&[&shop, &api])));
    // An IP address is never sent as SNI.
    let a = get_over(handshake(&g, &ca, "127.0.0.1", &[]).await, "/").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.served_cert, shop.der);
    stop(g).await;
}

#[tokio::test]
async fn failed_handshakes_are_counted_by_reason_and_expiry_is_exported() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!("{}{}", backends(&old, &new), tls_section(&[&shop])));

    // Plain HTTP sent to the TLS port.
    let mut tcp = TcpStream::connect(g.tls_addr.unwrap()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink).await;
    // A client that does not trust the certificate hangs up with an alert.
    let stranger = TestCa::new();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(stranger.client(&[])));
    let tcp = TcpStream::connect(g.tls_addr.unwrap()).await.unwrap();
    assert!(connector
        .connect(ServerName::try_from("shop.example").unwrap(), tcp)
        .await
        .is_err());

    eventually(Duration::from_secs(10), "both failures counted", || {
        metric(&g, "switchyard_tls_handshake_failures_total", &[("reason", "not_tls")]) == 1.0
            && metric(&g, "switchyard_tls_handshake_failures_total", &[("reason", "alert")]) == 1.0
    })
    .await;
    let expiry = metric(
        &g,
        "switchyard_tls_certificate_expiry_timestamp_seconds",
        &[("name", "shop.example")],
    );
    let (_, parsed) = x509_parser::parse_x509_certificate(&shop.der).unwrap();
    assert_eq!(expiry, parsed.validity().not_after.timestamp() as f64);
    stop(g).await;
}

#[tokio::test]
async fn a_reload_serves_new_certificates_to_new_handshakes_and_open_connections_live_on() {
    let ca = TestCa::new();
    let first = ca.issue("shop", &["shop.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (g, config, yaml) = tls_gateway_from_file(dir.path(), &old, &new, &first);

    // A kept-alive HTTP/1.1 connection made before the reload.
    let stream = handshake(&g, &ca, "shop.example", &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], first.der);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::get("/before")
            .header("host", "shop.example")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(send.send_request(req()).await.unwrap().status(), 200);

    // The same files, renewed.
    let renewed = ca.issue("shop", &["shop.example"]);
    assert_ne!(renewed.der, first.der);
    g.reload().unwrap();
    let after = get_over(handshake(&g, &ca, "shop.example", &[]).await, "/after").await;
    assert_eq!(after.served_cert, renewed.der, "new handshakes get the new certificate");
    send.ready().await.unwrap();
    assert_eq!(
        send.send_request(req()).await.unwrap().status(),
        200,
        "the connection opened before the reload still serves"
    );

    // A broken certificate file is refused and the one in use stays.
    std::fs::write(&renewed.cert_file, "not a certificate").unwrap();
    let refused = g.reload().unwrap_err().to_string();
    assert!(
        refused.contains("tls.certificates[0]") && refused.contains("shop.pem"),
        "{refused}"
    );
    // So is taking the listener away, which only a restart can do.
    std::fs::write(&config, yaml.split("tls:").next().unwrap()).unwrap();
    let refused = g.reload().unwrap_err().to_string();
    assert!(refused.contains("cannot be removed by a reload; restart"), "{refused}");
    let still = get_over(handshake(&g, &ca, "shop.example", &[]).await, "/still").await;
    assert_eq!(still.served_cert, renewed.der);
    stop(g).await;
}

fn ok_handler() -> Handler {
    Arc::new(|req: http::Request<hyper::body::Incoming>| {
        Box::pin(async move {
            json_response(
                200,
                serde_json::json!({ "version": format!("{:?}", req.version()), "path": req.uri().path() }),
            )
        })
    })
}

fn https_backends(old: &Origin, new_url: &str, tls: &str) -> String {
    format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{new_url}\", {tls} }}\nrollout: {{ percent: 100 }}\n",
        old.url()
    )
}

#[tokio::test]
async fn an_https_backend_with_a_private_ca_and_a_server_name() {
    let ca = TestCa::new();
    let leaf = ca.issue("backend", &["backend.internal"]);
    let secure = Origin::start_tls(ok_handler(), ca.server(&leaf, &[b"http/1.1"], false)).await;
    let old = Origin::named("old").await;
    let tls = format!(
        "tls: {{ ca_file: \"{}\", server_name: \"backend.internal\" }}",
        ca.ca_file.display()
    );
    let g = gateway(&https_backends(&old, &secure.url(), &tls));
    let a = get(&client(), &format!("{}/over-tls", proxy(&g)), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["path"], "/over-tls");
    assert_eq!(secure.count(), 1);
    stop(g).await;

    // Without the CA the certificate is not trusted: a 502 counted as TLS.
    let g = gateway(&https_backends(
        &old,
        &secure.url(),
        "tls: { server_name: \"backend.internal\" }",
    ));
    let a = get(&client(), &format!("{}/untrusted", proxy(&g)), &[]).await;
    assert_eq!(a.status, 502);
    assert!(a.text().contains("TLS with the new backend failed"), "{}", a.text());
    assert_eq!(
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "new"), ("kind", "tls")]
        ),
        1.0
    );
    stop(g).await;
}

#[tokio::test]
async fn a_backend_that_requires_a_client_certificate() {
    let ca = TestCa::new();
    let leaf = ca.issue("backend", &["backend.internal"]);
    let client_cert = ca.issue("gateway-client", &["switchyard.internal"]);
    let strict = Origin::start_tls(ok_handler(), ca.server(&leaf, &[b"http/1.1"], true)).await;
    let old = Origin::named("old").await;
    let base = format!(
        "ca_file: \"{}\", server_name: \"backend.internal\"",
        ca.ca_file.display()
    );

    let g = gateway(&https_backends(&old, &strict.url(), &format!("tls: {{ {base} }}")));
    let a = get(&client(), &format!("{}/no-cert", proxy(&g)), &[]).await;
    assert_eq!(a.status, 502, "refused without a client certificate");
    stop(g).await;

    let g = gateway(&https_backends(
        &old,
        &strict.url(),
        &format!(
            "tls: {{ {base}, client_cert_file: \"{}\", client_key_file: \"{}\" }}",
            client_cert.cert_file.display(),
            client_cert.key_file.display()
        ),
    ));
    let a = get(&client(), &format!("{}/with-cert", proxy(&g)), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(strict.count(), 1);
    stop(g).await;
}

#[tokio::test]
async fn http2_to_a_tls_backend_is_chosen_by_alpn() {
    let ca = TestCa::new();
    let leaf = ca.issue("backend", &["backend.internal"]);
    let h2 = Origin::start_tls(ok_handler(), ca.server(&leaf, &[b"h2", b"http/1.1"], false)).await;
    let h1 = Origin::start_tls(ok_handler(), ca.server(&leaf, &[b"http/1.1"], false)).await;
    let old = Origin::named("old").await;
    let tls = format!(
        "tls: {{ ca_file: \"{}\", server_name: \"backend.internal\" }}",
        ca.ca_file.display()
    );
    for (origin, protocol, want) in [
        (&h2, "auto", "HTTP/2.0"),
        (&h1, "auto", "HTTP/1.1"),
        (&h2, "http1", "HTTP/1.1"),
    ] {
        let g = gateway(&https_backends(
            &old,
            &origin.url(),
            &format!("protocol: {protocol}, {tls}"),
        ));
        let a = get(&client(), &format!("{}/v", proxy(&g)), &[]).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.json()["version"], want, "protocol {protocol}");
        stop(g).await;
    }
}

#[tokio::test]
async fn tls_sessions_to_a_backend_are_resumed() {
    let ca = TestCa::new();
    let leaf = ca.issue("backend", &["backend.internal"]);
    let secure = Origin::start_tls(ok_handler(), ca.server(&leaf, &[b"http/1.1"], false)).await;
    let old = Origin::named("old").await;
    // Connections are not kept, so each request shakes hands anew.
    let tls = format!(
        "idle_timeout: \"1ms\", tls: {{ ca_file: \"{}\", server_name: \"backend.internal\" }}",
        ca.ca_file.display()
    );
    let g = gateway(&format!(
        "server: {{ workers: 1 }}\n{}",
        https_backends(&old, &secure.url(), &tls)
    ));
    let c = client();
    for i in 0..3 {
        let a = get(&c, &format!("{}/r{i}", proxy(&g)), &[]).await;
        assert_eq!(a.status, 200);
        // Not synchronisation: time for the 1 ms idle_timeout to pass, so
        // the pooled connection is stale and the next request reconnects.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = secure.resumed.lock().unwrap().clone();
    assert!(resumed.len() >= 2, "{resumed:?}");
    assert!(!resumed[0], "the first handshake is a full one");
    assert!(resumed[1..].iter().all(|r| *r), "later handshakes resume: {resumed:?}");
    stop(g).await;
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_is_cut_at_its_deadline() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}{}  handshake_timeout: \"300ms\"\nserver: {{ workers: 1 }}\n",
        backends(&old, &new),
        tls_section(&[&shop])
    ));
    // Connected, silent: a TLS slowloris on the only worker.
    let mut stalled = TcpStream::connect(g.tls_addr.unwrap()).await.unwrap();
    let served = get_over(handshake(&g, &ca, "shop.example", &[]).await, "/meanwhile").await;
    assert_eq!(served.status, 200, "another client is served while one stalls");
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled connection is closed"
    );
    // Counted as the handshake task ends, which may be just after the close.
    eventually(Duration::from_secs(10), "the timeout counted", || {
        metric(&g, "switchyard_tls_handshake_failures_total", &[("reason", "timeout")]) == 1.0
    })
    .await;
    stop(g).await;
}

#[tokio::test]
async fn client_sessions_resume_across_a_certificate_reload() {
    let ca = TestCa::new();
    let shop = ca.issue("shop", &["shop.example"]);
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (g, _, _) = tls_gateway_from_file(dir.path(), &old, &new, &shop);
    // One client configuration, so one session cache, for every connection.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client(&[b"http/1.1"])));
    let connect = || async {
        let tcp = TcpStream::connect(g.tls_addr.unwrap()).await.unwrap();
        connector
            .connect(ServerName::try_from("shop.example").unwrap(), tcp)
            .await
            .unwrap()
    };
    // A whole exchange, so the TLS 1.3 session ticket (sent after the
    // handshake) has been read.
    let first = connect().await;
    assert_eq!(first.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
    assert_eq!(get_over(first, "/one").await.status, 200);
    ca.issue("shop", &["shop.example"]);
    g.reload().unwrap();
    let second = connect().await;
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "a ticket issued before the reload still resumes"
    );
    assert_eq!(get_over(second, "/two").await.status, 200);
    stop(g).await;
}
