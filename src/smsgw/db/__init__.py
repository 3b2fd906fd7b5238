"""Database: engine, declarative base, migrations."""
