//! One HTTP request through wasi:http (the host sends it, if the
//! clause's `allow_hosts` lists the server).

use vt_sdk::store::StoreError;

use crate::BaseUrl;

/// The methods the store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Read.
    Get,
    /// Ask whether there is.
    Head,
    /// Write a block.
    Put,
    /// Append, sync.
    Post,
}

impl Method {
    /// As HTTP spells it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

/// A response: its status and whole body.
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

/// Sends `method` for route `path` of `base` with `body`, and the bearer
/// `token` if given; waits for the whole response.
#[cfg(target_arch = "wasm32")]
pub fn request(
    base: &BaseUrl,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> Result<Response, StoreError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{self as t, Fields, OutgoingBody, OutgoingRequest};
    use wasip2::io::streams::StreamError;

    let path = base.path(path);
    let what = format!("{} {base}{}", method.name(), &path[base.prefix.len()..]);
    let fail = |e: String| StoreError::Io(format!("{what}: {e}"));
    let headers = Fields::new();
    let add = |k: &str, v: &[u8]| {
        headers
            .append(k, v)
            .map_err(|e| fail(format!("header {k}: {e:?}")))
    };
    add("accept", b"application/json, */*")?;
    if let Some(t) = token {
        add("authorization", format!("Bearer {t}").as_bytes())?;
    }
    if let Some(b) = body {
        add("content-length", b.len().to_string().as_bytes())?;
        add("content-type", b"application/octet-stream")?;
    }
    let req = OutgoingRequest::new(headers);
    let m = match method {
        Method::Get => t::Method::Get,
        Method::Head => t::Method::Head,
        Method::Put => t::Method::Put,
        Method::Post => t::Method::Post,
    };
    let scheme = if base.https {
        t::Scheme::Https
    } else {
        t::Scheme::Http
    };
    let bad = |_| fail("the request is malformed".into());
    req.set_method(&m).map_err(bad)?;
    req.set_scheme(Some(&scheme)).map_err(bad)?;
    req.set_authority(Some(&base.authority)).map_err(bad)?;
    req.set_path_with_query(Some(&path)).map_err(bad)?;
    let out_body = req.body().map_err(|_| fail("no request body".into()))?;
    // Sent first, written after: the host streams the body as it comes.
    let pending = outgoing_handler::handle(req, None).map_err(|e| fail(e.to_string()))?;
    // A failed write is reported after the response: if the request
    // failed (refused, no connection), that is what to say.
    let sent = write_body(&out_body, body.unwrap_or_default())
        .and_then(|()| OutgoingBody::finish(out_body, None).map_err(|e| e.to_string()));
    pending.subscribe().block();
    let resp = pending
        .get()
        .ok_or_else(|| fail("no response".into()))?
        .map_err(|_| fail("the response was taken twice".into()))?
        .map_err(|e| fail(e.to_string()))?;
    sent.map_err(|e| fail(format!("sending the body: {e}")))?;
    let status = resp.status();
    let mut data = Vec::new();
    let incoming = resp
        .consume()
        .map_err(|_| fail("no response body".into()))?;
    {
        let stream = incoming
            .stream()
            .map_err(|_| fail("no response body".into()))?;
        loop {
            match stream.blocking_read(1 << 20) {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(fail(format!("reading the response: {e:?}"))),
            }
        }
    }
    drop(t::IncomingBody::finish(incoming));
    Ok(Response { status, body: data })
}

/// Writes all of `data` to the request's body.
#[cfg(target_arch = "wasm32")]
fn write_body(body: &wasip2::http::types::OutgoingBody, mut data: &[u8]) -> Result<(), String> {
    let out = body.write().map_err(|_| "no body stream".to_owned())?;
    let e = |e: wasip2::io::streams::StreamError| format!("{e:?}");
    while !data.is_empty() {
        let room = out.check_write().map_err(e)? as usize;
        if room == 0 {
            out.subscribe().block();
            continue;
        }
        let n = room.min(data.len());
        out.write(&data[..n]).map_err(e)?;
        data = &data[n..];
    }
    match out.blocking_flush() {
        // Every byte was handed over; the host closes the stream once the
        // body's content-length is reached.
        Ok(()) | Err(wasip2::io::streams::StreamError::Closed) => Ok(()),
        Err(x) => Err(e(x)),
    }
}

/// Outside WebAssembly there is no wasi:http to send with.
#[cfg(not(target_arch = "wasm32"))]
pub fn request(
    base: &BaseUrl,
    method: Method,
    path: &str,
    _body: Option<&[u8]>,
    _token: Option<&str>,
) -> Result<Response, StoreError> {
    Err(StoreError::Unsupported(format!(
        "{} {base}{}: store-http sends requests through wasi:http, which only its WebAssembly build has",
        method.name(),
        base.path(path)
    )))
}
