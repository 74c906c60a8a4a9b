//! S3's REST-XML documents: responses rendered as boto3 parses them, and the few request bodies
//! S3 operations take.

use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::Error;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::model::{BucketInfo, CompletePart, Listing, MultipartUpload, ObjectMeta, PartListing};
use crate::wire::{Owner, iso8601_millis, url_encode};

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Appends XML-escaped text. Characters XML 1.0 cannot carry are written as character
/// references, as S3 does; clients avoid them by asking for `encoding-type=url`.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // \r would be normalised to \n by any XML parser; keep it exact.
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A small writer for the flat documents S3 returns.
struct Doc(String);

impl Doc {
    fn new(root: &str, namespaced: bool) -> Self {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        s.push_str(root);
        if namespaced {
            let _ = write!(s, " xmlns=\"{XMLNS}\"");
        }
        s.push('>');
        Doc(s)
    }

    fn open(&mut self, name: &str) {
        let _ = write!(self.0, "<{name}>");
    }

    fn close(&mut self, name: &str) {
        let _ = write!(self.0, "</{name}>");
    }

    fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        escape_into(&mut self.0, value);
        self.close(name);
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.0
    }
}

/// An S3 error document.
pub fn error(code: &str, message: &str, request_id: &str, details: &[(&str, &str)]) -> String {
    let mut d = Doc::new("Error", false);
    d.text("Code", code);
    d.text("Message", message);
    for (name, value) in details {
        d.text(name, value);
    }
    d.text("RequestId", request_id);
    d.text("HostId", request_id);
    d.finish("Error")
}

/// `ListAllMyBucketsResult` (ListBuckets).
pub fn list_buckets(
    buckets: &[BucketInfo],
    owner: &Owner,
    continuation_token: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let mut d = Doc::new("ListAllMyBucketsResult", true);
    d.open("Owner");
    d.text("ID", &owner.id);
    d.text("DisplayName", &owner.display_name);
    d.close("Owner");
    d.open("Buckets");
    for b in buckets {
        d.open("Bucket");
        d.text("Name", &b.name);
        d.text("CreationDate", &iso8601_millis(b.created));
        d.text("BucketRegion", &b.region);
        d.close("Bucket");
    }
    d.close("Buckets");
    if let Some(token) = continuation_token {
        d.text("ContinuationToken", token);
    }
    if let Some(prefix) = prefix {
        d.text("Prefix", prefix);
    }
    d.finish("ListAllMyBucketsResult")
}

/// The request parameters a listing response echoes.
#[derive(Clone, Debug, Default)]
pub struct ListEcho<'a> {
    /// Bucket name.
    pub bucket: &'a str,
    /// `prefix` as requested.
    pub prefix: &'a str,
    /// `delimiter` as requested.
    pub delimiter: Option<&'a str>,
    /// `max-keys` as requested (after defaulting).
    pub max_keys: usize,
    /// True when `encoding-type=url` was requested: keys, prefixes and markers are URL-encoded.
    pub url_encoded: bool,
    /// Include `Owner` in each object (`fetch-owner=true` for V2; always for V1).
    pub owner: Option<&'a Owner>,
}

/// `ListBucketResult` of ListObjectsV2.
pub fn list_objects_v2(
    echo: &ListEcho<'_>,
    listing: &Listing,
    continuation_token: Option<&str>,
    next_continuation_token: Option<&str>,
    start_after: Option<&str>,
) -> String {
    let enc = |s: &str| encode_if(echo.url_encoded, s);
    let mut d = Doc::new("ListBucketResult", true);
    d.text("Name", echo.bucket);
    d.text("Prefix", &enc(echo.prefix));
    if let Some(token) = continuation_token {
        d.text("ContinuationToken", token);
    }
    if let Some(token) = next_continuation_token {
        d.text("NextContinuationToken", token);
    }
    if let Some(after) = start_after {
        d.text("StartAfter", &enc(after));
    }
    d.text("KeyCount", &listing.key_count().to_string());
    d.text("MaxKeys", &echo.max_keys.to_string());
    if let Some(delim) = echo.delimiter {
        d.text("Delimiter", &enc(delim));
    }
    d.text("IsTruncated", bool_str(listing.is_truncated));
    if echo.url_encoded {
        d.text("EncodingType", "url");
    }
    listing_entries(&mut d, echo, listing);
    d.finish("ListBucketResult")
}

/// `ListBucketResult` of ListObjects (version 1).
pub fn list_objects_v1(echo: &ListEcho<'_>, listing: &Listing, marker: &str) -> String {
    let enc = |s: &str| encode_if(echo.url_encoded, s);
    let mut d = Doc::new("ListBucketResult", true);
    d.text("Name", echo.bucket);
    d.text("Prefix", &enc(echo.prefix));
    d.text("Marker", &enc(marker));
    // S3 returns NextMarker only with a delimiter; without one, clients resume after the last key.
    if echo.delimiter.is_some()
        && let Some(next) = listing.next_marker.as_deref()
    {
        d.text("NextMarker", &enc(next));
    }
    d.text("MaxKeys", &echo.max_keys.to_string());
    if let Some(delim) = echo.delimiter {
        d.text("Delimiter", &enc(delim));
    }
    d.text("IsTruncated", bool_str(listing.is_truncated));
    if echo.url_encoded {
        d.text("EncodingType", "url");
    }
    listing_entries(&mut d, echo, listing);
    d.finish("ListBucketResult")
}

fn listing_entries(d: &mut Doc, echo: &ListEcho<'_>, listing: &Listing) {
    for o in &listing.objects {
        d.open("Contents");
        d.text("Key", &encode_if(echo.url_encoded, &o.key));
        d.text("LastModified", &iso8601_millis(o.last_modified));
        d.text("ETag", &o.etag);
        if let Some(c) = &o.checksum {
            d.text("ChecksumAlgorithm", c.algorithm.as_str());
            d.text("ChecksumType", checksum_type_name(c));
        }
        d.text("Size", &o.size.to_string());
        if let Some(owner) = echo.owner {
            d.open("Owner");
            d.text("ID", &owner.id);
            d.text("DisplayName", &owner.display_name);
            d.close("Owner");
        }
        d.text("StorageClass", "STANDARD");
        d.close("Contents");
    }
    for p in &listing.common_prefixes {
        d.open("CommonPrefixes");
        d.text("Prefix", &encode_if(echo.url_encoded, p));
        d.close("CommonPrefixes");
    }
}

/// `LocationConstraint` (GetBucketLocation): empty for us-east-1, as S3 answers.
pub fn location(region: &str) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(s, "<LocationConstraint xmlns=\"{XMLNS}\">");
    if region != "us-east-1" {
        escape_into(&mut s, region);
    }
    s.push_str("</LocationConstraint>");
    s
}

/// `VersioningConfiguration` of a bucket on which versioning was never enabled.
pub fn versioning_never_enabled() -> String {
    Doc::new("VersioningConfiguration", true).finish("VersioningConfiguration")
}

/// One failed key of a DeleteObjects request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: String,
    /// The S3 error code.
    pub code: String,
    /// The message.
    pub message: String,
}

/// `DeleteResult` (DeleteObjects). In quiet mode only failures are listed.
pub fn delete_result(deleted: &[String], failures: &[DeleteFailure], quiet: bool) -> String {
    let mut d = Doc::new("DeleteResult", true);
    if !quiet {
        for key in deleted {
            d.open("Deleted");
            d.text("Key", key);
            d.close("Deleted");
        }
    }
    for f in failures {
        d.open("Error");
        d.text("Key", &f.key);
        d.text("Code", &f.code);
        d.text("Message", &f.message);
        d.close("Error");
    }
    d.finish("DeleteResult")
}

fn checksum_type_name(c: &Checksum) -> &'static str {
    if c.is_composite() {
        "COMPOSITE"
    } else {
        "FULL_OBJECT"
    }
}

/// The XML element carrying a checksum of `algorithm` (`ChecksumCRC32`...).
fn checksum_element(algorithm: ChecksumAlgorithm) -> String {
    format!("Checksum{}", algorithm.as_str())
}

/// `InitiateMultipartUploadResult` (CreateMultipartUpload).
pub fn initiate_multipart_upload(bucket: &str, upload: &MultipartUpload) -> String {
    let mut d = Doc::new("InitiateMultipartUploadResult", true);
    d.text("Bucket", bucket);
    d.text("Key", &upload.key);
    d.text("UploadId", &upload.upload_id);
    d.finish("InitiateMultipartUploadResult")
}

/// `CompleteMultipartUploadResult`. `location` is the object's URL.
pub fn complete_multipart_upload(location: &str, bucket: &str, object: &ObjectMeta) -> String {
    let mut d = Doc::new("CompleteMultipartUploadResult", true);
    d.text("Location", location);
    d.text("Bucket", bucket);
    d.text("Key", &object.key);
    d.text("ETag", &object.etag);
    if let Some(c) = &object.checksum {
        d.text(&checksum_element(c.algorithm), &c.value);
        d.text("ChecksumType", checksum_type_name(c));
    }
    d.finish("CompleteMultipartUploadResult")
}

/// `ListPartsResult` (ListParts).
pub fn list_parts(
    bucket: &str,
    listing: &PartListing,
    marker: u32,
    max_parts: usize,
    owner: &Owner,
) -> String {
    let mut d = Doc::new("ListPartsResult", true);
    d.text("Bucket", bucket);
    d.text("Key", &listing.upload.key);
    d.text("UploadId", &listing.upload.upload_id);
    d.text("PartNumberMarker", &marker.to_string());
    if let Some(next) = listing.next_marker {
        d.text("NextPartNumberMarker", &next.to_string());
    }
    d.text("MaxParts", &max_parts.to_string());
    d.text("IsTruncated", bool_str(listing.is_truncated));
    for p in &listing.parts {
        d.open("Part");
        d.text("PartNumber", &p.part_number.to_string());
        d.text("LastModified", &iso8601_millis(p.last_modified));
        d.text("ETag", &p.etag);
        d.text("Size", &p.size.to_string());
        if let Some(c) = &p.checksum {
            d.text(&checksum_element(c.algorithm), &c.value);
        }
        d.close("Part");
    }
    owner_elements(&mut d, owner);
    d.text("StorageClass", "STANDARD");
    if let Some(a) = listing.upload.checksum_algorithm {
        d.text("ChecksumAlgorithm", a.as_str());
    }
    if let Some(t) = listing.upload.checksum_type {
        d.text("ChecksumType", t.as_str());
    }
    d.finish("ListPartsResult")
}

fn owner_elements(d: &mut Doc, owner: &Owner) {
    for element in ["Initiator", "Owner"] {
        d.open(element);
        d.text("ID", &owner.id);
        d.text("DisplayName", &owner.display_name);
        d.close(element);
    }
}

/// The paging state a ListMultipartUploads response echoes.
#[derive(Clone, Debug, Default)]
pub struct UploadsPage<'a> {
    /// `prefix` as requested.
    pub prefix: &'a str,
    /// `key-marker` as requested.
    pub key_marker: &'a str,
    /// `upload-id-marker` as requested.
    pub upload_id_marker: &'a str,
    /// `max-uploads` after defaulting.
    pub max_uploads: usize,
    /// True when more uploads follow.
    pub is_truncated: bool,
    /// `encoding-type=url`.
    pub url_encoded: bool,
}

/// `ListMultipartUploadsResult` (ListMultipartUploads).
pub fn list_multipart_uploads(
    bucket: &str,
    page: &UploadsPage<'_>,
    uploads: &[MultipartUpload],
    owner: &Owner,
) -> String {
    let enc = |s: &str| encode_if(page.url_encoded, s);
    let mut d = Doc::new("ListMultipartUploadsResult", true);
    d.text("Bucket", bucket);
    d.text("KeyMarker", &enc(page.key_marker));
    d.text("UploadIdMarker", page.upload_id_marker);
    if page.is_truncated
        && let Some(last) = uploads.last()
    {
        d.text("NextKeyMarker", &enc(&last.key));
        d.text("NextUploadIdMarker", &last.upload_id);
    }
    d.text("Prefix", &enc(page.prefix));
    d.text("MaxUploads", &page.max_uploads.to_string());
    d.text("IsTruncated", bool_str(page.is_truncated));
    if page.url_encoded {
        d.text("EncodingType", "url");
    }
    for u in uploads {
        d.open("Upload");
        d.text("Key", &enc(&u.key));
        d.text("UploadId", &u.upload_id);
        owner_elements(&mut d, owner);
        d.text("StorageClass", "STANDARD");
        d.text("Initiated", &iso8601_millis(u.initiated));
        if let Some(a) = u.checksum_algorithm {
            d.text("ChecksumAlgorithm", a.as_str());
        }
        if let Some(t) = u.checksum_type {
            d.text("ChecksumType", t.as_str());
        }
        d.close("Upload");
    }
    d.finish("ListMultipartUploadsResult")
}

fn encode_if(url_encoded: bool, s: &str) -> String {
    if url_encoded {
        url_encode(s)
    } else {
        s.to_owned()
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// A parsed XML element: local name, child elements, and its text content.
#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Deepest nesting accepted; S3 request documents are three levels deep.
const MAX_DEPTH: usize = 8;

fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedXml {
        reason: reason.into(),
    }
}

const MALFORMED: &str =
    "The XML you provided was not well-formed or did not validate against our published schema";

/// Parses a small XML document into elements (namespaces dropped, entities resolved).
fn parse(body: &[u8]) -> Result<Element, Error> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|_| malformed(MALFORMED))?;
        match event {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(malformed(MALFORMED));
                }
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(|_| malformed(MALFORMED))?
                    .to_owned();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| malformed(MALFORMED))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|_| malformed(MALFORMED))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(malformed(MALFORMED)),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|_| malformed(MALFORMED))?;
                stack
                    .last_mut()
                    .ok_or_else(|| malformed(MALFORMED))?
                    .text
                    .push_str(&text);
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|_| malformed(MALFORMED))? {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        _ => return Err(malformed(MALFORMED)),
                    },
                };
                stack
                    .last_mut()
                    .ok_or_else(|| malformed(MALFORMED))?
                    .text
                    .push(c);
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions.
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(malformed(MALFORMED));
    }
    root.ok_or_else(|| malformed(MALFORMED))
}

/// Parses a CreateBucket body: the `LocationConstraint`, if any. An empty body is valid.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let root = parse(body)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(malformed(MALFORMED));
    }
    for child in &root.children {
        if child.name != "LocationConstraint" {
            return Err(Error::NotImplemented {
                what: format!("CreateBucketConfiguration.{}", child.name),
            });
        }
    }
    Ok(root
        .child("LocationConstraint")
        .map(|c| c.text.trim().to_owned())
        .filter(|c| !c.is_empty()))
}

/// Most keys one DeleteObjects request may name, as S3 enforces.
pub const MAX_DELETE_KEYS: usize = 1000;

/// A parsed DeleteObjects body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Each object's key and version id, if one was given.
    pub objects: Vec<(String, Option<String>)>,
    /// Report only failures.
    pub quiet: bool,
}

/// Parses a DeleteObjects body.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, Error> {
    let root = parse(body)?;
    if root.name != "Delete" {
        return Err(malformed(MALFORMED));
    }
    let quiet = match root.child("Quiet").map(|q| q.text.trim()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(malformed(MALFORMED)),
    };
    let mut objects = Vec::new();
    for o in root.children.iter().filter(|c| c.name == "Object") {
        let key = o
            .child("Key")
            .ok_or_else(|| malformed(MALFORMED))?
            .text
            .clone();
        let version = o.child("VersionId").map(|v| v.text.trim().to_owned());
        objects.push((key, version));
    }
    if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
        return Err(malformed(MALFORMED));
    }
    Ok(DeleteRequest { objects, quiet })
}

/// Parses a CompleteMultipartUpload body: the parts, in the order given.
pub fn parse_complete_multipart(body: &[u8]) -> Result<Vec<CompletePart>, Error> {
    let root = parse(body)?;
    if root.name != "CompleteMultipartUpload" {
        return Err(malformed(MALFORMED));
    }
    let mut parts = Vec::new();
    for p in root.children.iter().filter(|c| c.name == "Part") {
        let part_number = p
            .child("PartNumber")
            .and_then(|n| n.text.trim().parse::<u32>().ok())
            .ok_or_else(|| malformed(MALFORMED))?;
        let etag = p
            .child("ETag")
            .map(|e| e.text.trim().to_owned())
            .ok_or_else(|| malformed(MALFORMED))?;
        let mut checksum = None;
        for algorithm in ChecksumAlgorithm::ALL {
            if let Some(c) = p.child(&checksum_element(algorithm)) {
                if checksum.is_some() {
                    return Err(malformed(MALFORMED));
                }
                checksum = Some(Checksum::parse(algorithm, c.text.trim())?);
            }
        }
        parts.push(CompletePart {
            part_number,
            etag,
            checksum,
        });
    }
    Ok(parts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::ObjectMeta;
    use time::macros::datetime;

    #[test]
    fn escapes_text() {
        let mut s = String::new();
        escape_into(&mut s, "a&b<c>\"d'\r\u{1}é");
        assert_eq!(s, "a&amp;b&lt;c&gt;&quot;d&apos;&#13;&#x1;é");
    }

    #[test]
    fn renders_errors() {
        let x = error(
            "NoSuchKey",
            "The specified key does not exist.",
            "REQ1",
            &[("Key", "a&b")],
        );
        assert_eq!(
            x,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>a&amp;b</Key>\
             <RequestId>REQ1</RequestId><HostId>REQ1</HostId></Error>"
        );
    }

    #[test]
    fn renders_v2_listing_url_encoded() {
        let listing = Listing {
            objects: vec![ObjectMeta {
                key: "dir/a b+c.zip".into(),
                size: 5,
                etag: "\"abc\"".into(),
                last_modified: datetime!(2026-01-02 03:04:05.678 UTC),
                content_type: "x".into(),
                headers: Default::default(),
                user_metadata: Default::default(),
                checksum: None,
            }],
            common_prefixes: vec!["dir/sub dir/".into()],
            is_truncated: true,
            next_marker: Some("dir/sub dir/".into()),
        };
        let echo = ListEcho {
            bucket: "b",
            prefix: "dir/",
            delimiter: Some("/"),
            max_keys: 2,
            url_encoded: true,
            owner: None,
        };
        let x = list_objects_v2(&echo, &listing, None, Some("TOKEN"), None);
        assert!(x.contains("<Key>dir/a%20b%2Bc.zip</Key>"), "{x}");
        assert!(
            x.contains("<LastModified>2026-01-02T03:04:05.678Z</LastModified>"),
            "{x}"
        );
        assert!(x.contains("<ETag>&quot;abc&quot;</ETag>"), "{x}");
        assert!(
            x.contains("<CommonPrefixes><Prefix>dir/sub%20dir/</Prefix></CommonPrefixes>"),
            "{x}"
        );
        assert!(
            x.contains("<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"),
            "{x}"
        );
        assert!(
            x.contains("<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>"),
            "{x}"
        );
        assert!(
            x.contains("<NextContinuationToken>TOKEN</NextContinuationToken>"),
            "{x}"
        );
    }

    #[test]
    fn location_is_empty_for_us_east_1() {
        assert!(location("us-east-1").ends_with("\"></LocationConstraint>"));
        assert!(location("eu-west-1").ends_with(">eu-west-1</LocationConstraint>"));
    }

    #[test]
    fn parses_create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b"").unwrap(), None);
        let body = br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"#;
        assert_eq!(
            parse_create_bucket_configuration(body).unwrap().as_deref(),
            Some("eu-west-1")
        );
        for bad in [
            &b"<CreateBucketConfiguration>"[..],
            b"<Other/>",
            b"not xml at all",
            b"<a></b>",
        ] {
            assert_eq!(
                parse_create_bucket_configuration(bad)
                    .unwrap_err()
                    .s3_code(),
                "MalformedXML",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let tags = b"<CreateBucketConfiguration><Tags/></CreateBucketConfiguration>";
        assert_eq!(
            parse_create_bucket_configuration(tags)
                .unwrap_err()
                .s3_code(),
            "NotImplemented"
        );
    }

    #[test]
    fn parses_complete_multipart() {
        let body = br#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"a"</ETag><ChecksumCRC32>vyN5GA==</ChecksumCRC32><PartNumber>1</PartNumber></Part><Part><ETag>&quot;b&quot;</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart(body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].part_number, 1);
        assert_eq!(parts[0].etag, "\"a\"");
        assert_eq!(
            parts[0].checksum.as_ref().unwrap().algorithm,
            ChecksumAlgorithm::Crc32
        );
        assert_eq!(parts[1].etag, "\"b\"");
        assert_eq!(parts[1].checksum, None);
        for bad in [
            &b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>"[..],
            b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<Other/>",
        ] {
            assert_eq!(parse_complete_multipart(bad).unwrap_err().s3_code(), "MalformedXML");
        }
    }

    #[test]
    fn parses_delete_requests() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a &amp; b</Key></Object><Object><Key> sp </Key><VersionId>null</VersionId></Object><Quiet>true</Quiet></Delete>"#;
        let d = parse_delete(body).unwrap();
        assert!(d.quiet);
        assert_eq!(
            d.objects,
            vec![("a & b".into(), None), (" sp ".into(), Some("null".into()))]
        );
        assert!(parse_delete(b"<Delete></Delete>").is_err());
        let many = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(MAX_DELETE_KEYS + 1)
        );
        assert!(parse_delete(many.as_bytes()).is_err());
    }
}
