"""Packaging for ossfs: a FUSE filesystem that mounts an Aliyun OSS bucket."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "ossfs" / "__init__.py").read_text()).group(1)

setup(
    name="ossfs",
    version=VERSION,
    description="Mount an Aliyun OSS bucket as a local directory (FUSE), compatible with ossfs 1.x and s3fs",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="ossfs developers",
    license="Apache-2.0",
    url="https://github.com/ossfs/ossfs",
    python_requires=">=3.9",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    install_requires=[
        "oss2>=2.18,<3",
        "mfusepy>=3.0,<4",
        "diskcache>=5.6,<6",
        "xattr>=1.0,<2",
        "crcmod>=1.7,<2",
        "configargparse>=1.7,<2",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "boto3>=1.26", "requests>=2.28", "fastcrc>=0.5,<1"],
        # CRC-64 that releases the GIL, for ossfs-server's PUT path (crcmod is the fallback)
        "server": ["fastcrc>=0.5,<1"],
    },
    entry_points={
        "console_scripts": [
            "ossfs=ossfs.cli:main",
            "ossfs-server=ossfs.server.__main__:main",
        ],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Console",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Filesystems",
    ],
)
