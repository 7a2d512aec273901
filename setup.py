"""trainer.py and canonical_setup.py stand at the repository's root, where a student opens them;
installed, they are breaklab.trainer and breaklab.canonical_setup, like the folders that
pyproject.toml maps into the package."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT_MODULES = ("trainer.py", "canonical_setup.py")


class BuildPy(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # a checkout finds them through breaklab/__init__.py
            for name in ROOT_MODULES:
                self.copy_file(name, os.path.join(self.build_lib, "breaklab", name))


setup(cmdclass={"build_py": BuildPy})
