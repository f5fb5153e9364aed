//! Every response the API's own tests receive from the router is checked against the
//! OpenAPI document (`notesaga_api::openapi`, what `/openapi.json` serves): a response
//! that is not documented — status, headers, content type or body — fails the test that
//! received it. Some tests probe routes that do not exist on purpose (authentication is
//! in front of every route, known or not): an undocumented route may only answer a
//! refusal problem (401, 403, 404, 405).

use std::sync::LazyLock;

use axum::http::HeaderMap;
use notesaga_testkit::openapi::Spec;

/// Panics, saying what is wrong, unless the response conforms to the document.
pub(crate) fn assert_conforms(
    method: &str,
    uri: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) {
    static SPEC: LazyLock<Spec> = LazyLock::new(|| {
        let document = serde_json::to_value(notesaga_api::openapi::document())
            .expect("the document serialises");
        Spec::new(document).expect("the document has paths")
    });
    if SPEC.documents(method, uri) {
        SPEC.assert(method, uri, status, headers, body);
    } else {
        SPEC.assert_refusal(method, uri, status, headers, body);
    }
}
