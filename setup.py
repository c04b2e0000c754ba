"""Packaging for `fgr_core`; every piece of metadata comes from `settings.ini` (nbdev's config)."""
from configparser import ConfigParser
from pathlib import Path
import shlex

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]


def _reqs(key: str) -> list[str]:
    "Requirement strings listed, space-separated, under `key` of settings.ini."
    return shlex.split(cfg.get(key, ""))


readme = Path(__file__).parent / "README.md"
setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else cfg["description"],
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    python_requires=f">={cfg['min_python']}",
    # data/paper_results/ stays the single copy in the repository; the wheel carries it as fgr_core/paper_results/
    packages=[*setuptools.find_packages(include=[cfg["lib_path"], f"{cfg['lib_path']}.*"]),
              f"{cfg['lib_path']}.paper_results"],
    package_dir={f"{cfg['lib_path']}.paper_results": "data/paper_results"},
    package_data={cfg["lib_path"]: ["py.typed"], f"{cfg['lib_path']}.paper_results": ["*.csv"]},
    include_package_data=True,
    install_requires=_reqs("requirements"),
    extras_require={"dev": _reqs("dev_requirements")},
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
