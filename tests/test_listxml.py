"""The listing-page reader installed into oss2 (``ossfs.listxml`` + ``store_oss``) gives
exactly what oss2's own ElementTree parser gives, for ossfs-server's answers, for pages
in the shape real OSS writes, and for every page it does not read itself (fallback)."""
import uuid
from xml.sax.saxutils import escape

import oss2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import ossfs.store_oss  # noqa: F401  (installs the fast parsers)
from ossfs import listxml

FAST_V1 = oss2.xml_utils.parse_list_objects
FAST_V2 = oss2.xml_utils.parse_list_objects_v2
FULL_V1 = FAST_V1._full
FULL_V2 = FAST_V2._full


def _result(v2=False):
    cls = oss2.models.ListObjectsV2Result if v2 else oss2.models.ListObjectsResult
    r = cls.__new__(cls)
    r.object_list, r.prefix_list = [], []
    r.is_truncated, r.next_marker, r.next_continuation_token = None, None, None
    return r


def _plain(result):
    objects = []
    for o in result.object_list:
        d = dict(vars(o))
        d["owner"] = None if o.owner is None else vars(o.owner)
        objects.append(d)
    return (result.is_truncated, result.next_marker, result.next_continuation_token, objects,
            result.prefix_list)


def _both(body, v2=False):
    """(fast, full) outcomes: the plain result or the exception type."""
    out = []
    for parse in ((FAST_V2, FULL_V2) if v2 else (FAST_V1, FULL_V1)):
        try:
            out.append(_plain(parse(_result(v2), body)))
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            out.append(type(exc))
    return out


def _same(body, v2=False):
    fast, full = _both(body, v2)
    assert fast == full
    return full


def test_installed_in_oss2():
    assert FAST_V1._ossfs and FAST_V2._ossfs
    assert FULL_V1.__module__ == FULL_V2.__module__ == "oss2.xml_utils"


KEYS = ["plain", "a&b", "x<y>z", 'q"uote', "it's", "sp ace", "tab\there", "uni-é中文", "pct%41", "plus+",
        "amp;lt;", "&amp;", "ctl\x02", "new\nline", "dir/child", "dir2/a/b", "trail/"]


@pytest.mark.parametrize("v2", [False, True])
def test_server_pages_read_fast_and_equal(oss_server_session, v2):
    bucket = oss_server_session.oss_bucket()
    prefix = "lx-%s/" % uuid.uuid4().hex[:8]
    for k in KEYS:
        bucket.put_object(prefix + k, b"x" * len(k))
    bodies = []
    full = FULL_V2 if v2 else FULL_V1

    def capture(result, body):
        bodies.append(body)
        return full(result, body)

    name = "parse_list_objects_v2" if v2 else "parse_list_objects"
    fast = getattr(oss2.xml_utils, name)
    setattr(oss2.xml_utils, name, capture)
    try:
        for delimiter in ("", "/"):
            for max_keys in (3, 1000):
                token = ""
                for _ in range(20):
                    if v2:
                        r = bucket.list_objects_v2(prefix=prefix, delimiter=delimiter, max_keys=max_keys,
                                                   continuation_token=token)
                        token = r.next_continuation_token
                    else:
                        r = bucket.list_objects(prefix=prefix, delimiter=delimiter, max_keys=max_keys, marker=token)
                        token = r.next_marker
                    if not r.is_truncated:
                        break
    finally:
        setattr(oss2.xml_utils, name, fast)
    assert len(bodies) > 8
    seen = set()
    for body in bodies:
        assert listxml.parse(body) is not None     # the fast path reads every server page
        truncated, marker, token, objects, prefixes = _same(body, v2)
        seen.update(o["key"] for o in objects)
        seen.update(prefixes)
    assert {prefix + k for k in KEYS} <= seen


OSS_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult>
  <Name>examplebucket</Name>
  <Prefix>fun/</Prefix>
  <Marker></Marker>
  <MaxKeys>100</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <NextMarker>fun/test&amp;.jpg</NextMarker>
  <Contents>
    <Key>fun/movie/001.avi</Key>
    <LastModified>2012-02-24T08:43:07.000Z</LastModified>
    <ETag>&quot;5B3C1A2E053D763E1B002CC607C5A0FE1****&quot;</ETag>
    <Type>Normal</Type>
    <Size>344606</Size>
    <StorageClass>Standard</StorageClass>
    <Owner>
      <ID>0022012****</ID>
      <DisplayName>user-example</DisplayName>
    </Owner>
  </Contents>
  <Contents>
    <Key>fun/a &lt;b&gt; &amp;lt; &apos;c&apos;</Key>
    <LastModified>2012-02-24T08:43:27.000Z</LastModified>
    <ETag>&quot;5B3C1A2E053D763E1B002CC607C5A0FE1****&quot;</ETag>
    <Type>Multipart</Type>
    <Size>0</Size>
    <StorageClass>Archive</StorageClass>
    <RestoreInfo>ongoing-request="true"</RestoreInfo>
  </Contents>
  <Contents><Key>fun/empty-restore</Key><LastModified>2012-02-24T08:43:27.000Z</LastModified><ETag>&quot;E&quot;</ETag><Type>Appendable</Type><Size>1</Size><StorageClass>IA</StorageClass><RestoreInfo></RestoreInfo></Contents>
  <CommonPrefixes>
    <Prefix>fun/movie/</Prefix>
  </CommonPrefixes>
  <CommonPrefixes><Prefix>fun/x&amp;y/</Prefix></CommonPrefixes>
</ListBucketResult>"""


def test_oss_shaped_page_read_fast_and_equal():
    body = OSS_PAGE.encode()
    page = listxml.parse(body)
    assert page is not None
    truncated, marker, _, objects, prefixes = _same(body)
    assert truncated and marker == "fun/test&.jpg"
    assert [o["key"] for o in objects] == ["fun/movie/001.avi", "fun/a <b> &lt; 'c'", "fun/empty-restore"]
    assert objects[0]["owner"] == {"display_name": "user-example", "id": "0022012****"}
    assert [o["restore_info"] for o in objects] == [None, 'ongoing-request="true"', ""]
    assert [o["last_modified"] for o in objects] == [1330072987, 1330073007, 1330073007]
    assert prefixes == ["fun/movie/", "fun/x&y/"]
    v2 = OSS_PAGE.replace("NextMarker", "NextContinuationToken").encode()
    assert listxml.parse(v2) is not None
    _, _, token, _, _ = _same(v2, v2=True)
    assert token == "fun/test&.jpg"


def _variant(old, new):
    assert old in OSS_PAGE
    return OSS_PAGE.replace(old, new, 1).encode()


# Pages outside the shape listxml reads: it says so (None), and the installed parser
# answers exactly as oss2 does, a result or the same exception.
OUTSIDE = {
    "self-closing": _variant("<Marker></Marker>", "<Marker/>"),
    "cdata": _variant("<Key>fun/movie/001.avi</Key>", "<Key><![CDATA[fun/<movie>]]></Key>"),
    "comment": _variant("<Name>", "<!-- c --><Name>"),
    "namespace": _variant("<ListBucketResult>", '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'),
    "unknown field": _variant("<StorageClass>Standard</StorageClass>",
                              "<StorageClass>Standard</StorageClass><TransitionTime>x</TransitionTime>"),
    "field order": _variant("<Type>Normal</Type>\n    <Size>344606</Size>", "<Size>344606</Size><Type>Normal</Type>"),
    "missing field": _variant("<StorageClass>Standard</StorageClass>", ""),
    "bare ampersand": _variant("fun/movie/001.avi", "fun/a&b"),
    "undefined entity": _variant("fun/movie/001.avi", "fun/a&nbsp;b"),
    "numeric reference": _variant("fun/movie/001.avi", "fun/&#65;"),
    "bad truncated": _variant("<IsTruncated>true</IsTruncated>", "<IsTruncated>yes</IsTruncated>"),
    "truncated without marker": _variant("<NextMarker>fun/test&amp;.jpg</NextMarker>", ""),
    "bad date": _variant("2012-02-24T08:43:07.000Z", "2012-02-24T08:43:07Z"),
    "bad size": _variant("<Size>344606</Size>", "<Size>12k</Size>"),
    "two markers": _variant("<NextMarker>", "<NextMarker>a</NextMarker><NextMarker>"),
    "carriage return": _variant("fun/movie/001.avi", "fun/a\r\nb"),
    "latin-1": OSS_PAGE.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').replace("fun/movie/001.avi", "fun/\xe9")
                       .encode("latin-1"),
    "owner order": _variant("<ID>0022012****</ID>\n      <DisplayName>user-example</DisplayName>",
                            "<DisplayName>user-example</DisplayName><ID>0022012****</ID>"),
    "element with children": _variant("<Name>examplebucket</Name>",
                                      "<Name>examplebucket</Name><Other><X>1</X></Other>"),
    "nested full entry": _variant("<Name>examplebucket</Name>", "<Name>examplebucket</Name><Other>%s</Other>" % (
        OSS_PAGE[OSS_PAGE.index("<Contents><Key>fun/empty"):OSS_PAGE.index("</Contents>\n  <CommonPrefixes>")]
        + "</Contents>")),
    "nested contents": _variant("<Name>examplebucket</Name>",
                                "<Name>examplebucket</Name><Other><Contents><Key>k</Key></Contents></Other>"),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_pages_outside_the_shape_fall_back_to_oss2(name):
    body = OUTSIDE[name]
    if name not in ("bad truncated", "truncated without marker", "bad date", "bad size"):
        assert listxml.parse(body) is None
    _same(body)


@settings(max_examples=150, deadline=None)
@given(keys=hs.lists(hs.text(hs.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=12),
                     max_size=6),
       url=hs.booleans(), truncated=hs.booleans())
def test_any_key_text_reads_as_oss2_reads_it(keys, url, truncated):
    """Keys of any text (XML-escaped as a server must, or URL-encoded), with and without
    a next marker: the installed parser and oss2's agree, whether or not the fast path
    takes the page (XML cannot carry every control character; oss2 then raises)."""
    def enc(k):
        return oss2.compat.urlquote(k, "") if url else escape(k, {'"': "&quot;", "'": "&apos;"})

    entries = "".join(
        "<Contents><Key>%s</Key><LastModified>2020-01-02T03:04:05.000Z</LastModified><ETag>&quot;E%d&quot;</ETag>"
        "<Type>Normal</Type><Size>%d</Size><StorageClass>Standard</StorageClass></Contents>" % (enc(k), i, i)
        for i, k in enumerate(keys))
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name>%s'
            "<IsTruncated>%s</IsTruncated>%s%s<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>"
            "</ListBucketResult>" % ("<EncodingType>url</EncodingType>" if url else "",
                                     "true" if truncated else "false",
                                     "<NextMarker>%s</NextMarker>" % enc(keys[-1] if keys else "m") if truncated else "",
                                     entries, enc("p/"))).encode("utf-8")
    _same(body)
