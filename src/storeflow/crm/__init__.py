"""storeflow.crm"""
