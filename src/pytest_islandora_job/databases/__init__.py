"""The persistent queue's database: MariaDB/MySQL, PostgreSQL or SQLite."""
