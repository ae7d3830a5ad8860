"""The only package that imports `libvirt`, so that every blocking hypervisor call has one home.

`gateway` owns connections, the bounded worker pool and the error translation; `events` bridges
libvirt's event thread to asyncio; `ops` holds the blocking recipes run in the pool; `xml` builds
and reads the XML documents, without any I/O.
"""
