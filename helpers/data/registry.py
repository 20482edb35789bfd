"""The public dermoscopy datasets the course downloads (notebook 01, "use real data"): their files, addresses,
sizes and published checksums, and where each value comes from.

:func:`helpers.data.download.download_dataset` fetches what :data:`REGISTRY` lists; checksums are copied from the
cited sources, never computed here. When a server's file changes, this is the one file to update.
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers.data.layouts import HAM_METADATA

HAM10000_DOI = "doi:10.7910/DVN/DBW86T"
DATAVERSE_SERVER = "https://dataverse.harvard.edu"
ISIC2018_BASE = "https://isic-challenge-data.s3.amazonaws.com/2018"


@dataclass(frozen=True)
class Resource:
    """One downloadable archive.

    Attributes:
        filename: the file's name (also its name on Dataverse).
        url: where to get it; None means "look its id up in the Dataverse record ``doi`` by file name".
        extract_to: the folder the archive's files must end up in, under the dataset folder; None for a plain
            file (not an archive), which is moved to ``<dataset folder>/<filename>``.
        size: expected size in bytes, or None to trust the server's Content-Length.
        sha256, md5: published checksums (hex), or None when unknown.
        source: where the size / checksum values come from.
        doi: Dataverse record for ``url=None`` look-ups.
    """

    filename: str
    url: str | None
    extract_to: str | None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    source: str = ""
    doi: str | None = None


_ISIC_SRC = ("sha256: torch-em (constantinpape/torch-em, torch_em/data/datasets/medical/isic.py); sizes and md5: "
             "independent download manifests that agree with it where they overlap")

#: The datasets :func:`download_dataset` knows. Checksums are copied from the cited sources, never computed here.
REGISTRY: dict[str, list[Resource]] = {
    "ham10000": [
        Resource("HAM10000_images_part_1.zip", f"{DATAVERSE_SERVER}/api/access/datafile/3172585",
                 "HAM10000_images_part_1", md5="4639bfa73ab251610530a97c898e6e46",
                 source="Dataverse file id and MD5 as published by Dataverse", doi=HAM10000_DOI),
        Resource("HAM10000_images_part_2.zip", f"{DATAVERSE_SERVER}/api/access/datafile/3172584",
                 "HAM10000_images_part_2", md5="da43d6cc50f6613013be07e8986b384b",
                 source="Dataverse file id and MD5 as published by Dataverse", doi=HAM10000_DOI),
        Resource("HAM10000_segmentations_lesion_tschandl.zip", None, "HAM10000_segmentations_lesion_tschandl",
                 size=10_808_743, md5="6e8d252e09cfdb0189199f15985a5b84",
                 source="Dataverse record v4.0 (size and MD5); file id looked up at run time", doi=HAM10000_DOI),
        Resource(HAM_METADATA, f"{DATAVERSE_SERVER}/api/access/datafile/4338392?format=original", None,
                 size=690_218, md5="8f85fb1aa29d80a2797247e434deb79d",
                 source="Dataverse file id 4338392 and the MD5 of the original CSV as Dataverse publishes it (cited "
                        "by public HAM10000 projects); size of the original, not of Dataverse's re-exported TSV",
                 doi=HAM10000_DOI),
    ],
    "isic2018": [
        Resource("ISIC2018_Task1-2_Training_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Training_Input.zip",
                 "ISIC2018_Task1-2_Training_Input", size=11_165_358_566,
                 sha256="80f98572347a2d7a376227fa9eb2e4f7459d317cb619865b8b9910c81446675f", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Training_GroundTruth.zip", f"{ISIC2018_BASE}/ISIC2018_Task1_Training_GroundTruth.zip",
                 "ISIC2018_Task1_Training_GroundTruth", size=27_402_895,
                 sha256="99f8b2bb3c4d6af483362010715f7e7d5d122d9f6c02cac0e0d15bef77c7604c", source=_ISIC_SRC),
        Resource("ISIC2018_Task1-2_Validation_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Validation_Input.zip",
                 "ISIC2018_Task1-2_Validation_Input", size=239_231_159,
                 sha256="0ea920fcfe512d12a6e620b50b50233c059f67b10146e1479c82be58ff15a797", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Validation_GroundTruth.zip",
                 f"{ISIC2018_BASE}/ISIC2018_Task1_Validation_GroundTruth.zip",
                 "ISIC2018_Task1_Validation_GroundTruth", size=759_706,
                 sha256="f6911e9c0a64e6d687dd3ca466ca927dd5e82145cb2163b7a1e5b37d7a716285", source=_ISIC_SRC),
        Resource("ISIC2018_Task1-2_Test_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Test_Input.zip",
                 "ISIC2018_Task1-2_Test_Input", size=2_370_457_338,
                 sha256="e59ae1f69f4ed16f09db2cb1d76c2a828487b63d28f6ab85997f5616869b127d", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Test_GroundTruth.zip", f"{ISIC2018_BASE}/ISIC2018_Task1_Test_GroundTruth.zip",
                 "ISIC2018_Task1_Test_GroundTruth", size=9_680_101,
                 sha256="2e8f6edce454a5bdee52485e39f92bd6eddf357e81f39018d05512175238ef82", source=_ISIC_SRC),
    ],
}
