//! WebSocket (and any `Upgrade`) through the gateway: the handshake is
//! split like any request, then bytes flow both ways; never mirrored;
//! idle tunnels close; shutdown gives tunnels the drain time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use switchyard::gateway::Gateway;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket server that answers each text message with `name:message`.
struct Echo {
    addr: std::net::SocketAddr,
}

impl Echo {
    async fn start(name: &'static str) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if let Message::Text(t) = msg {
                            if ws.send(Message::text(format!("{name}:{t}"))).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Echo { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket through the gateway; returns it and the side that
/// served the handshake.
async fn open(g: &Gateway, headers: &[(&str, &str)]) -> (Ws, String) {
    let mut req = format!("ws://{}/chat", g.proxy_addr).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let side = resp.headers()["x-switchyard-served-by"].to_str().unwrap().to_string();
    (ws, side)
}

async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("the tunnel is open")
        .unwrap();
    reply.into_text().unwrap().to_string()
}

/// Whether the gateway closes the WebSocket within `within`.
async fn closed_within(ws: &mut Ws, within: Duration) -> bool {
    let closed = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(within, closed).await.is_ok()
}

fn config(old: &Echo, new: &Echo, extra: &str) -> String {
    format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\nrollout: {{ percent: 50, sticky: \"header:x-user\" }}\n{extra}",
        old.url(),
        new.url()
    )
}

#[tokio::test]
async fn websockets_are_split_sticky_and_carried_both_ways() {
    let (old, new) = (Echo::start("old").await, Echo::start("new").await);
    let g = gateway(&config(&old, &new, "shadow: { percent: 100 }\n"));
    let mut sides = std::collections::HashSet::new();
    for user in 0..40 {
        let user = format!("user-{user}");
        let (mut ws, side) = open(&g, &[("x-user", &user)]).await;
        assert_eq!(
            echo(&mut ws, "hi").await,
            format!("{side}:hi"),
            "bytes reach the side that answered 101"
        );
        assert_eq!(echo(&mut ws, "again").await, format!("{side}:again"));
        let (mut again, side_again) = open(&g, &[("x-user", &user)]).await;
        assert_eq!(side_again, side, "{user} sticks to one side");
        assert_eq!(echo(&mut again, "x").await, format!("{side}:x"));
        sides.insert(side);
        ws.close(None).await.unwrap();
        again.close(None).await.unwrap();
    }
    assert_eq!(sides.len(), 2, "at 50 % both sides serve WebSockets");
    let (mut forced, side) = open(&g, &[("x-user", "user-0"), ("x-switchyard-backend", "new")]).await;
    assert_eq!(side, "new");
    assert_eq!(echo(&mut forced, "f").await, "new:f");
    drop(forced);

    eventually(Duration::from_secs(10), "every tunnel closed and counted", || {
        metric(&g, "switchyard_upgraded_connections", &[]) == 0.0
            && metric(&g, "switchyard_upgraded_connections_total", &[]) == 81.0
    })
    .await;
    assert!(metric(&g, "switchyard_upgraded_connections_total", &[("backend", "old")]) > 0.0);
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("outcome", "skipped_upgrade")]
        ),
        81.0,
        "never mirrored, always counted"
    );
    assert_eq!(
        metric(&g, "switchyard_shadow_requests_total", &[("outcome", "completed")]),
        0.0
    );
    stop(g).await;
}

#[tokio::test]
async fn an_open_tunnel_is_counted_while_it_lives() {
    let (old, new) = (Echo::start("old").await, Echo::start("new").await);
    let g = gateway(&config(&old, &new, ""));
    let (mut ws, side) = open(&g, &[("x-user", "u")]).await;
    echo(&mut ws, "up").await;
    assert_eq!(
        metric(&g, "switchyard_upgraded_connections", &[("backend", &side)]),
        1.0
    );
    ws.close(None).await.unwrap();
    drop(ws);
    eventually(Duration::from_secs(10), "the gauge falls back", || {
        metric(&g, "switchyard_upgraded_connections", &[("backend", &side)]) == 0.0
    })
    .await;
    stop(g).await;
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let (old, new) = (Echo::start("old").await, Echo::start("new").await);
    let g = gateway(&config(&old, &new, "server: { upgrade_idle_timeout: \"300ms\" }\n"));
    let (mut ws, _) = open(&g, &[("x-user", "u")]).await;
    echo(&mut ws, "once").await;
    assert!(
        closed_within(&mut ws, Duration::from_secs(10)).await,
        "an idle tunnel is closed by the gateway"
    );
    stop(g).await;
}

#[tokio::test]
async fn a_backend_that_refuses_the_upgrade_is_answered_as_usual() {
    let refuses = Origin::start(Arc::new(|_req| {
        Box::pin(async move { json_response(426, serde_json::json!({"error": "no websockets here"})) })
    }))
    .await;
    let g = gateway(&backends(&refuses, &refuses));
    let req = format!("ws://{}/chat", g.proxy_addr).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 426);
        }
        other => panic!("expected the backend's 426, got {other:?}"),
    }
    assert_eq!(metric(&g, "switchyard_upgraded_connections_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test]
async fn on_shutdown_tunnels_get_the_drain_time_then_close() {
    let (old, new) = (Echo::start("old").await, Echo::start("new").await);
    let g = gateway(&config(&old, &new, "server: { drain_timeout: \"1s\" }\n"));
    let (mut ws, side) = open(&g, &[("x-user", "u")]).await;
    g.shutdown();
    assert_eq!(
        echo(&mut ws, "still").await,
        format!("{side}:still"),
        "a tunnel keeps working while the gateway drains"
    );
    let joined = tokio::task::spawn_blocking(move || g.join());
    assert!(
        closed_within(&mut ws, Duration::from_secs(10)).await,
        "the tunnel is closed once the drain time is over"
    );
    tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .expect("the gateway stops")
        .unwrap();
}

#[tokio::test]
async fn websockets_over_http2_reach_http1_backends() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (old, new) = (Echo::start("old").await, Echo::start("new").await);
    let g = gateway(&config(&old, &new, ""));
    let tcp = TcpStream::connect(g.proxy_addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    // The gateway's SETTINGS, which allow extended CONNECT, come with the
    // first exchange; this one is answered by an echo server that speaks
    // no plain HTTP, so it fails, which is fine.
    let warm = http::Request::get(format!("http://{}/warm", g.proxy_addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let _ = send.send_request(warm).await.unwrap();

    let mut req = http::Request::connect(format!("http://{}/chat", g.proxy_addr))
        .header("sec-websocket-version", "13")
        .header("x-user", "h2-user")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441 accepts with a 200");
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let side = resp.headers()["x-switchyard-served-by"].to_str().unwrap().to_string();
    let stream = hyper::upgrade::on(resp).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(
        TokioIo::new(stream),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send(Message::text("over h2")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().to_string(), format!("{side}:over h2"));
    // The same user over HTTP/1.1 lands on the same side.
    let (h1, side_h1) = open(&g, &[("x-user", "h2-user")]).await;
    assert_eq!(side_h1, side);
    // A tunnel is counted once hyper hands over the client's side, just
    // after the client has its answer.
    eventually(Duration::from_secs(10), "both tunnels counted", || {
        metric(&g, "switchyard_upgraded_connections", &[("backend", &side)]) == 2.0
    })
    .await;
    drop((ws, h1));
    stop(g).await;
}
