"""OSS signatures (V1, V4, presigned URLs) and their failures, with the real oss2 SDK."""
import email.utils
import time

import oss2
import pytest
import requests


@pytest.fixture
def server(oss_server_session):
    b = oss_server_session.oss_bucket()
    b.put_object("auth/object", b"secret data")
    return oss_server_session


def v4_bucket(server, secret=None, key_id=None):
    auth = oss2.AuthV4(key_id or server.access_key_id, secret or server.access_key_secret)
    return oss2.Bucket(auth, server.endpoint, server.bucket, region="cn-hangzhou", enable_crc=True)


def test_v1_header_signature_with_subresources(server):
    b = server.oss_bucket()
    b.put_object("auth/with space+plus", b"v1", headers={"x-oss-meta-x": "y"})
    assert b.get_object("auth/with space+plus").read() == b"v1"
    up = b.init_multipart_upload("auth/mp")     # ?uploads is a signed sub-resource
    b.abort_multipart_upload("auth/mp", up.upload_id)


def test_v4_header_signature(server):
    b = v4_bucket(server)
    b.put_object("auth/v4 \u00e9/key", b"v4 body", headers={"x-oss-meta-a": "b", "Content-Type": "text/plain"})
    assert b.get_object("auth/v4 \u00e9/key").read() == b"v4 body"
    assert [o.key for o in oss2.ObjectIterator(b, prefix="auth/v4")] == ["auth/v4 \u00e9/key"]
    b.append_object("auth/v4-append", 0, b"a")
    # AdditionalHeaders are signed too
    auth = oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(server.access_key_id,
                                                                          server.access_key_secret))
    pb = oss2.Bucket(auth, server.endpoint, server.bucket, region="cn-hangzhou")
    assert pb.get_object("auth/object").read() == b"secret data"
    req = oss2.http.Request("GET", pb._make_url(server.bucket, "auth/object"), region="cn-hangzhou",
                            product="oss", headers={"Host": "127.0.0.1:%d" % server.port})
    pb.auth._sign_request(req, server.bucket, "auth/object", in_additional_headers=["host"])
    assert "AdditionalHeaders=host" in req.headers["authorization"]
    r = requests.get(req.url, headers=dict(req.headers))
    assert r.status_code == 200 and r.content == b"secret data"


def test_v4_wrong_secret(server):
    with pytest.raises(oss2.exceptions.ServerError) as e:
        v4_bucket(server, secret="wrong").get_object("auth/object")
    assert e.value.status == 403 and e.value.code == "SignatureDoesNotMatch"


def test_wrong_secret_and_unknown_key(server):
    bad = server.oss_bucket(auth=oss2.Auth(server.access_key_id, "not-the-secret"))
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bad.get_object("auth/object")
    assert e.value.status == 403 and e.value.code == "SignatureDoesNotMatch"
    assert "not-the-secret" not in str(e.value) and server.access_key_secret not in str(e.value)
    unknown = server.oss_bucket(auth=oss2.Auth("NOSUCHKEYID", "whatever"))
    with pytest.raises(oss2.exceptions.ServerError) as e:
        unknown.put_object("auth/x", b"x")
    assert e.value.status == 403 and e.value.code == "InvalidAccessKeyId"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        server.oss_bucket().get_object("auth/x")
    # HEAD errors have no body but the status and a request id
    with pytest.raises(oss2.exceptions.ServerError) as e:
        bad.head_object("auth/object")
    assert e.value.status == 403 and e.value.request_id


def test_skewed_date(server):
    old = email.utils.formatdate(time.time() - 16 * 60, usegmt=True)
    r = server.signed_request("GET", server.bucket, "auth/object", date=old)
    assert r.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in r.text
    future = email.utils.formatdate(time.time() + 16 * 60, usegmt=True)
    r = server.signed_request("GET", server.bucket, "auth/object", date=future)
    assert r.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in r.text
    near = email.utils.formatdate(time.time() - 5 * 60, usegmt=True)
    r = server.signed_request("GET", server.bucket, "auth/object", date=near)
    assert r.status_code == 200 and r.content == b"secret data"


def test_anonymous_refused(server):
    for method in ("GET", "PUT", "HEAD", "DELETE"):
        r = requests.request(method, "%s/%s/auth/object" % (server.endpoint, server.bucket))
        assert r.status_code == 403, method
        assert r.headers["x-oss-request-id"]
        if method != "HEAD":
            assert "<Code>AccessDenied</Code>" in r.text
    assert server.oss_bucket().get_object("auth/object").read() == b"secret data"
    with pytest.raises(oss2.exceptions.AccessDenied):
        oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, server.bucket).get_object("auth/object")


def test_presigned_v1(server):
    b = server.oss_bucket()
    url = b.sign_url("GET", "auth/object", 60)
    assert server.access_key_secret not in url
    r = requests.get(url)
    assert r.status_code == 200 and r.content == b"secret data"
    put = b.sign_url("PUT", "auth/presigned-put", 60)
    assert requests.put(put, data=b"uploaded").status_code == 200
    assert b.get_object("auth/presigned-put").read() == b"uploaded"
    tampered = url.replace("%2Fobject?", "%2FobjecT?")
    assert tampered != url
    r = requests.get(tampered)
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text
    sig_tampered = url.replace("Signature=", "Signature=A")
    assert requests.get(sig_tampered).status_code == 403
    expired = b.sign_url("GET", "auth/object", -10)
    r = requests.get(expired)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text and "expired" in r.text


def test_presigned_v4(server):
    b = v4_bucket(server)
    url = b.sign_url("GET", "auth/object", 60)
    assert "x-oss-signature" in url
    r = requests.get(url)
    assert r.status_code == 200 and r.content == b"secret data"
    assert url.replace("%2Fobject?", "%2FobjecT?") != url
    r = requests.get(url.replace("%2Fobject?", "%2FobjecT?"))
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text
    expired = b.sign_url("GET", "auth/object", 1)
    time.sleep(2.1)
    r = requests.get(expired)
    assert r.status_code == 403 and "expired" in r.text
