"""ossfs-server: an OSS-compatible (and S3-compatible) object server for tests and demos.

Layout: :mod:`.store` (persistent buckets/objects), :mod:`.state` (store, credentials,
counters, fault settings), :mod:`.httpd` (HTTP server and dispatch), :mod:`.httputil`
(body reading/writing shared by the faces), :mod:`.oss_api` + :mod:`.auth_oss` (the OSS
REST API and its signatures), :mod:`.s3_api` (the S3 face).  See ``docs/server.md``.
"""
