// The artifact store through @aws-sdk/client-s3 as a user uploads an agent: a file streamed from
// disk (the SDK sends it aws-chunked with a trailing CRC32 checksum), a Buffer, a multipart
// upload, then head, ranged get, list with a delimiter, delete.

import assert from "node:assert/strict";
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NotFound,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";

import { probeZip, s3, uniqueName } from "./lib.mjs";

const bucket = uniqueName("js-s3").replaceAll("_", "-").toLowerCase();
const dir = mkdtempSync(join(tmpdir(), "berth-js-s3-"));

after(() => rmSync(dir, { recursive: true, force: true }));

async function body(key, extra = {}) {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return { got, bytes: Buffer.from(await got.Body.transformToByteArray()) };
}

test("uploads from a file stream, a Buffer and in parts read back byte for byte", async () => {
  const made = await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  assert.equal(made.$metadata.httpStatusCode, 200);
  const head = await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  assert.equal(head.$metadata.httpStatusCode, 200);

  // A file on disk, streamed: the SDK does not know the length up front.
  const zip = probeZip();
  const path = join(dir, "deployment_package.zip");
  writeFileSync(path, zip);
  const streamed = await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: "agents/streamed.zip", Body: createReadStream(path) }),
  );
  assert.equal(streamed.$metadata.httpStatusCode, 200);
  assert.ok(streamed.ETag);
  assert.deepEqual((await body("agents/streamed.zip")).bytes, zip);

  const text = Buffer.from("hello, berth");
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "agents/notes.txt", Body: text, ContentType: "text/plain" }));
  const described = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "agents/notes.txt" }));
  assert.equal(described.ContentLength, text.length);
  assert.equal(described.ContentType, "text/plain");
  assert.ok(described.LastModified instanceof Date);
  const ranged = await body("agents/notes.txt", { Range: "bytes=7-11" });
  assert.equal(ranged.bytes.toString(), "berth");
  assert.equal(ranged.got.ContentRange, `bytes 7-11/${text.length}`);

  // Multipart: a 5 MiB part and a short last one.
  const key = "agents/parts.bin";
  const first = Buffer.alloc(5 * 1024 * 1024, 1);
  const last = Buffer.from("the end");
  const upload = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const parts = [];
  for (const [index, part] of [first, last].entries()) {
    const sent = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId, PartNumber: index + 1, Body: part }),
    );
    parts.push({ PartNumber: index + 1, ETag: sent.ETag });
  }
  const done = await s3.send(
    new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId, MultipartUpload: { Parts: parts } }),
  );
  assert.match(done.ETag, /-2"$/);
  assert.deepEqual((await body(key)).bytes, Buffer.concat([first, last]));

  // Listing with a delimiter, then deletion.
  const top = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: "/" }));
  assert.deepEqual(top.CommonPrefixes.map((p) => p.Prefix), ["agents/"]);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "agents/" }));
  assert.deepEqual(
    listed.Contents.map((o) => [o.Key, o.Size]),
    [
      ["agents/notes.txt", text.length],
      ["agents/parts.bin", first.length + last.length],
      ["agents/streamed.zip", zip.length],
    ],
  );
  for (const o of listed.Contents) assert.ok(o.LastModified instanceof Date);
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "agents/notes.txt" }));
  let caught;
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "agents/notes.txt" }));
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof NotFound, String(caught));
  assert.equal(caught.$metadata.httpStatusCode, 404);
});
